"""Input files read in chunks of rows, so memory stays bounded whatever the file's size.

    >>> reader = open_reader("data.parquet", chunk_rows=16384)
    >>> for chunk in reader:            # Chunk(start=0, data=<DataFrame of 16384 rows>) ...
    ...     ...

CSV through pandas' C parser (``chunksize``; each chunk infers its own types, so one bad value
spoils its chunk, not the file, and malformed lines are reported and skipped), Parquet through
pyarrow's ``iter_batches`` (one row group's pages at a time), JSON lines through orjson (a line
that is not JSON is a bad row), ``.npy`` through a memory map (only the rows of the chunk are
read). ``progress()`` says how far the reader is in ``unit`` (rows, or bytes when the row count is
not known in advance).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dosirak.exceptions import InvalidArgument

FORMATS = ("csv", "parquet", "jsonl", "npy")
_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
             ".ndjson": "jsonl", ".npy": "npy"}
_SKIPPED_LINE = re.compile(r"Skipping line (\d+): (.*)", re.DOTALL)


@dataclass
class Chunk:
    """Rows ``start`` to ``start + rows`` of the input (``data``: DataFrame, list or ndarray).

    ``bad`` lists CSV lines the parser skipped as malformed: ``(row, line, message)``.
    """

    start: int
    data: Any
    rows: int
    bad: list[tuple[int | None, int | None, str]] = field(default_factory=list)


def file_format(path: str | Path, given: str | None = None) -> str:
    """The format of ``path``: ``given``, else from its extension."""
    if given is not None:
        if given not in FORMATS:
            raise InvalidArgument(f"format {given!r} is not one of {FORMATS}")
        return given
    found = _SUFFIXES.get(Path(path).suffix.lower())
    if found is None:
        raise InvalidArgument(f"cannot tell the format of {path} from its extension; name it "
                              f".csv, .parquet, .jsonl or .npy, or pass the format")
    return found


class Reader:
    """Iterates over ``Chunk``s of one input file."""

    unit = "rows"

    def __init__(self, path: Path, chunk_rows: int) -> None:
        self.path = path
        self.chunk_rows = chunk_rows
        self.total: int | None = None  # in ``unit``

    def __iter__(self) -> Iterator[Chunk]:
        raise NotImplementedError

    def progress(self) -> int:
        """How far reading has got, in ``unit``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the file."""


class _StreamReader(Reader):
    """A reader of a text format read front to back: progress is the bytes read so far."""

    unit = "bytes"

    def __init__(self, path: Path, chunk_rows: int) -> None:
        super().__init__(path, chunk_rows)
        self.total = os.path.getsize(path)
        self._stream = open(path, "rb")  # noqa: SIM115 - closed by close()

    def progress(self) -> int:
        return 0 if self._stream.closed else self._stream.tell()

    def close(self) -> None:
        self._stream.close()


class CsvReader(_StreamReader):
    def __iter__(self) -> Iterator[Chunk]:
        import pandas as pd

        start = 0
        chunks = pd.read_csv(self._stream, chunksize=self.chunk_rows, on_bad_lines="warn")
        while True:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", pd.errors.ParserWarning)
                try:
                    frame = next(chunks)
                except StopIteration:
                    frame = None
                except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
                    raise InvalidArgument(f"{self.path} cannot be read as CSV near row "
                                          f"{start}: {error}") from None
            bad = [_skipped_line(str(warning.message)) for warning in caught
                   if issubclass(warning.category, pd.errors.ParserWarning)]
            if frame is None:
                if bad:
                    yield Chunk(start, frame, 0, bad)
                return
            frame.index = pd.RangeIndex(start, start + len(frame))
            yield Chunk(start, frame, len(frame), bad)
            start += len(frame)


def _skipped_line(message: str) -> tuple[int | None, int | None, str]:
    found = _SKIPPED_LINE.match(message.strip())
    if found is None:
        return None, None, message.strip()
    return None, int(found.group(1)), f"malformed CSV line: {found.group(2).strip()}"


class ParquetReader(Reader):
    def __init__(self, path: Path, chunk_rows: int) -> None:
        super().__init__(path, chunk_rows)
        import pyarrow.parquet as pq

        try:
            self._file = pq.ParquetFile(path)
        except Exception as error:  # pyarrow raises ArrowInvalid, OSError...
            raise InvalidArgument(f"{path} cannot be read as Parquet: {error}") from None
        self.total = self._file.metadata.num_rows
        self._done = 0

    def __iter__(self) -> Iterator[Chunk]:
        import pandas as pd

        for batch in self._file.iter_batches(batch_size=self.chunk_rows):
            frame = batch.to_pandas()
            frame.index = pd.RangeIndex(self._done, self._done + len(frame))
            chunk = Chunk(self._done, frame, len(frame))
            self._done += len(frame)
            yield chunk

    def progress(self) -> int:
        return self._done

    def close(self) -> None:
        self._file.close()


class JsonLinesReader(_StreamReader):
    def __iter__(self) -> Iterator[Chunk]:
        import orjson

        start = line_number = 0
        values: list[Any] = []
        for line in self._stream:
            line_number += 1
            if not line.strip():
                continue
            try:
                values.append(orjson.loads(line))
            except orjson.JSONDecodeError as error:
                values.append(Unreadable(f"line {line_number} is not JSON: {error.msg}"))
            if len(values) >= self.chunk_rows:
                yield Chunk(start, values, len(values))
                start += len(values)
                values = []
        if values:
            yield Chunk(start, values, len(values))


class Unreadable:
    """Stands in the rows for a JSON line that could not be parsed; the row is reported."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"Unreadable({self.message!r})"


class NpyReader(Reader):
    def __init__(self, path: Path, chunk_rows: int) -> None:
        super().__init__(path, chunk_rows)
        try:
            self._array = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as error:  # object arrays need pickle, which is refused
            raise InvalidArgument(f"{path} cannot be read as .npy without pickle: {error}") \
                from None
        if self._array.ndim == 0:
            raise InvalidArgument(f"{path} holds a single value, not rows; save an array of "
                                  "rows (shape (n, ...))")
        self.total = int(self._array.shape[0])
        self._done = 0

    def __iter__(self) -> Iterator[Chunk]:
        for start in range(0, self.total or 0, self.chunk_rows):
            # A copy: the rows leave the memory map (and the page cache can drop them).
            rows = np.array(self._array[start:start + self.chunk_rows])
            self._done = start + len(rows)
            yield Chunk(start, rows, len(rows))

    def progress(self) -> int:
        return self._done

    def close(self) -> None:
        mmap = getattr(self._array, "_mmap", None)
        self._array = None
        if mmap is not None:
            mmap.close()


_READERS: dict[str, type[Reader]] = {"csv": CsvReader, "parquet": ParquetReader,
                                     "jsonl": JsonLinesReader, "npy": NpyReader}


def open_reader(path: str | Path, chunk_rows: int, fmt: str | None = None) -> Reader:
    """A chunked reader for ``path`` (format from the extension unless ``fmt`` is given)."""
    path = Path(path)
    kind = file_format(path, fmt)
    if not path.is_file():
        raise InvalidArgument(f"the input file {path} does not exist")
    return _READERS[kind](path, chunk_rows)
