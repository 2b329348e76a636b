"""Output files written chunk by chunk, in order, and put in place only when the run succeeds.

A writer writes to ``<name>.partial`` beside the output and renames it over the output at
``finish()`` (an atomic rename), so a failed or interrupted run never leaves a half-written file
that looks complete. ``abort()`` removes the partial file.

Results arrive as numpy arrays or DataFrames (``dosirak.offline.tables``). Arrays become columns
``result`` (one value per row) or ``result_0 ... result_{k-1}`` (k values per row) in tables;
``.npy`` output stacks the arrays as they are.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from dosirak.exceptions import InvalidArgument
from dosirak.offline.readers import file_format

# Room for the .npy header, rewritten with the final row count at the end.
_NPY_HEADER_BYTES = 128


class Writer:
    """Writes result chunks to one output file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self.rows = 0

    def write(self, result: Any) -> None:
        """Append the rows of ``result`` (an array or a DataFrame)."""
        raise NotImplementedError

    def _close(self) -> None:
        """Flush and close the partial file."""

    def finish(self) -> None:
        """Close and move the partial file into place."""
        self._close()
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        """Close and remove the partial file."""
        with contextlib.suppress(Exception):
            self._close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.partial)


def as_frame(result: Any) -> Any:
    """A DataFrame of ``result``'s rows (arrays become ``result`` / ``result_i`` columns)."""
    import pandas as pd

    if isinstance(result, pd.DataFrame):
        return result
    array = np.asarray(result)
    if array.ndim == 1:
        return pd.DataFrame({"result": array})
    if array.ndim == 2:
        return pd.DataFrame({f"result_{i}": array[:, i] for i in range(array.shape[1])})
    return pd.DataFrame({"result": list(array.tolist())})


class ParquetWriter(Writer):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._writer: Any = None
        self._schema: Any = None

    def write(self, result: Any) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(as_frame(result), preserve_index=False)
        if self._writer is None:
            self._schema = table.schema
            self._writer = pq.ParquetWriter(self.partial, self._schema)
        elif table.schema != self._schema:
            try:
                table = table.cast(self._schema)
            except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as error:
                raise InvalidArgument(f"the results changed type between chunks ({error}); "
                                      "return the same columns and types for every chunk") from None
        self._writer.write_table(table)
        self.rows += table.num_rows

    def _close(self) -> None:
        if self._writer is None:  # no rows at all: still an empty, valid file
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({}), self.partial)
            return
        self._writer.close()


class CsvWriter(Writer):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._stream = open(self.partial, "wb")  # noqa: SIM115 - closed by _close()
        self._columns: list[str] | None = None

    def write(self, result: Any) -> None:
        frame = _plain_columns(as_frame(result))
        header = self._columns is None
        if header:
            self._columns = [str(column) for column in frame.columns]
        text = frame.to_csv(index=False, header=header, lineterminator="\n")
        self._stream.write(text.encode("utf-8"))
        self.rows += len(frame)

    def _close(self) -> None:
        self._stream.close()


class JsonLinesWriter(Writer):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._stream = open(self.partial, "wb")  # noqa: SIM115 - closed by _close()

    def write(self, result: Any) -> None:
        frame = as_frame(result)
        if len(frame):
            text = frame.to_json(orient="records", lines=True, date_format="iso")
            self._stream.write(text.encode("utf-8"))
            if not text.endswith("\n"):
                self._stream.write(b"\n")
        self.rows += len(frame)

    def _close(self) -> None:
        self._stream.close()


class NpyWriter(Writer):
    """Streams rows into a ``.npy`` file; the header's row count is written at the end."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._stream = open(self.partial, "wb")  # noqa: SIM115 - closed by _close()
        self._stream.write(b"\0" * _NPY_HEADER_BYTES)
        self._dtype: np.dtype | None = None
        self._row_shape: tuple[int, ...] = ()

    def write(self, result: Any) -> None:
        array = result.to_numpy() if hasattr(result, "to_numpy") else np.asarray(result)
        if array.dtype.hasobject:
            raise InvalidArgument("the results hold Python objects, which .npy cannot store "
                                  "without pickle; write .parquet or .jsonl instead")
        if self._dtype is None:
            self._dtype, self._row_shape = array.dtype, array.shape[1:]
        elif array.shape[1:] != self._row_shape:
            raise InvalidArgument(f"the results changed shape between chunks ({self._row_shape} "
                                  f"then {array.shape[1:]} per row); .npy needs one shape")
        elif array.dtype != self._dtype:
            array = array.astype(self._dtype)
        self._stream.write(np.ascontiguousarray(array).data)
        self.rows += len(array)

    def _close(self) -> None:
        if self._stream.closed:
            return
        header = {"descr": np.lib.format.dtype_to_descr(self._dtype or np.dtype("float64")),
                  "fortran_order": False, "shape": (self.rows, *self._row_shape)}
        text = repr(header).encode("latin-1")
        # magic (6) + version (2) + length (2) + header, padded with spaces, ending in \n.
        room = _NPY_HEADER_BYTES - 10
        if len(text) + 1 > room:
            raise InvalidArgument("the result rows have too many dimensions for the .npy header")
        text = text + b" " * (room - len(text) - 1) + b"\n"
        self._stream.seek(0)
        self._stream.write(b"\x93NUMPY\x01\x00" + room.to_bytes(2, "little") + text)
        self._stream.close()


def _plain_columns(frame: Any) -> Any:
    """Nested values (lists, dicts) as JSON text: CSV cells hold one value each."""
    import orjson

    nested = [column for column in frame.columns if frame[column].dtype == object and
              frame[column].map(lambda v: isinstance(v, (list, dict, tuple))).any()]
    if not nested:
        return frame
    frame = frame.copy()
    for column in nested:
        frame[column] = frame[column].map(
            lambda v: orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY).decode()
            if isinstance(v, (list, dict, tuple)) else v)
    return frame


_WRITERS: dict[str, type[Writer]] = {"csv": CsvWriter, "parquet": ParquetWriter,
                                     "jsonl": JsonLinesWriter, "npy": NpyWriter}


def open_writer(path: str | Path, fmt: str | None = None) -> Writer:
    """A streaming writer for ``path`` (format from the extension unless ``fmt`` is given)."""
    path = Path(path)
    kind = file_format(path, fmt)
    if not path.parent.is_dir():
        raise InvalidArgument(f"the output's directory {path.parent} does not exist")
    return _WRITERS[kind](path)
