"""Batch inference over files: an API run over every row of a CSV, Parquet, JSON-lines or .npy
file, results written in the same order to another file.

    >>> report = run_batch(svc, "classify", "iris.parquet", "labels.parquet")
    >>> report.rows_written, report.rows_per_second

How it runs. The input is read one chunk at a time (``readers``) in a thread, one chunk ahead.
APIs that take a table get one chunk per call; the runners run in worker processes, one per core
by default, and up to two chunks per worker are in flight, so every core has work while the main
process reads, converts and writes. The chunks are the batches: the runners' own batching is
switched off for the run (their dispatchers would only cut chunks into smaller batches). APIs
that take one item (JSON, Text) get one call per row, all rows of a chunk at once, and there the
runners' batching merges them (with a latency budget too large to refuse anything). Results are
written in input order (``writers``) to a partial file that replaces the output at the end.

Memory is bounded by the chunk size: at most ``2 * workers + 2`` chunks exist at once, whatever
the size of the file.

Bad rows. A chunk whose call fails is split in halves and each half called again, down to the
rows that fail alone. With ``on_error="stop"`` the first bad row stops the run with its row
number (0-based, in input order) and no output is left behind; with ``"skip"`` bad rows go to an
errors file (JSON lines: ``row``, ``error``, ``input``) and the run goes on, up to ``max_errors``.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dosirak.exceptions import DosirakError, InvalidArgument, MissingDependency
from dosirak.offline import tables
from dosirak.offline.readers import Chunk, Reader, open_reader
from dosirak.offline.writers import Writer, open_writer
from dosirak.services import Service

ON_ERROR = ("stop", "skip")
DEFAULT_CHUNK_ROWS = 16384
DEFAULT_ROW_CHUNK_ROWS = 1024  # row-mode chunks: every row of a chunk is a call in flight
DEFAULT_MAX_ERRORS = 1000
# A batch job has no client waiting on a call: nothing should be refused for lateness.
BATCH_LATENCY_MS = 3_600_000.0


class ProgressSink(Protocol):
    """Where a run reports progress (the CLI's progress bar)."""

    def start(self, total: int | None, unit: str) -> None:
        """The input's size in ``unit`` ("rows" or "bytes"), when known."""

    def advance(self, rows: int, position: int) -> None:
        """``rows`` rows written so far; the reader is at ``position`` (in the unit)."""


class BadRow(InvalidArgument):
    """A row failed and the run was told to stop at the first bad row."""

    def __init__(self, row: int | None, line: int | None, message: str) -> None:
        where = f"row {row}" if row is not None else f"line {line}"
        super().__init__(f"{where} of the input failed: {message}; the run stopped and wrote "
                         "no output (run with --on-error skip to write bad rows to an errors "
                         "file and go on)")
        self.row = row
        self.line = line


@dataclass
class BatchReport:
    """What a finished run did."""

    rows_read: int
    rows_written: int
    bad_rows: int
    seconds: float
    output: Path
    errors_path: Path | None
    workers: int
    startup_seconds: float = 0.0  # starting the service: runner processes, models loaded
    peak_rss_bytes: int = 0

    @property
    def rows_per_second(self) -> float:
        """Rows read per second once the service had started."""
        busy = self.seconds - self.startup_seconds
        return self.rows_read / busy if busy > 0 else float("inf")


def run_batch(
    svc: Service,
    api_name: str,
    input_path: str | Path,
    output_path: str | Path,
    *,
    chunk_rows: int | None = None,
    workers: int | None = None,
    on_error: str = "stop",
    errors_path: str | Path | None = None,
    max_errors: int = DEFAULT_MAX_ERRORS,
    input_format: str | None = None,
    output_format: str | None = None,
    progress: ProgressSink | None = None,
) -> BatchReport:
    """Run ``api_name`` of ``svc`` over every row of ``input_path``; write ``output_path``.

    ``workers`` runner processes (default: one per core; 0 runs the model in this process).
    ``errors_path`` defaults to ``<output>.errors.jsonl`` (written only with ``on_error="skip"``
    and only when a row fails).
    """
    api = svc.apis.get(api_name)
    if api is None:
        raise InvalidArgument(f"service {svc.name!r} has no API {api_name!r}; its APIs: "
                              f"{sorted(svc.apis)}")
    if api.kwargs_input:
        raise InvalidArgument(f"API {api_name!r} takes several named inputs (Multipart); batch "
                              "inference passes one table or one row per call")
    if on_error not in ON_ERROR:
        raise InvalidArgument(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    table_mode = tables.table_mode(api.input, api_name)
    chunk_rows = chunk_rows or (DEFAULT_CHUNK_ROWS if table_mode else DEFAULT_ROW_CHUNK_ROWS)
    if chunk_rows < 1:
        raise InvalidArgument(f"chunk_rows must be >= 1, got {chunk_rows}")
    workers = len(os.sched_getaffinity(0)) if workers is None else workers
    if workers < 0:
        raise InvalidArgument(f"workers must be >= 0 (0: in this process), got {workers}")
    output = Path(output_path)
    errors = ErrorsFile(Path(errors_path) if errors_path is not None
                        else output.with_name(output.name + ".errors.jsonl"))
    if on_error == "skip" and errors.path.exists():
        errors.path.unlink()  # an errors file of an earlier run would describe this one wrongly
    reader = open_reader(input_path, chunk_rows, input_format)
    try:
        writer = open_writer(output, output_format)
    except BaseException:
        reader.close()
        raise
    job = _Job(svc, api, reader, writer, errors, table_mode=table_mode, workers=workers,
               stop=on_error == "stop", max_errors=max_errors, progress=progress)
    started = time.perf_counter()
    try:
        asyncio.run(job.run())
    finally:
        reader.close()
        errors.close()
    return BatchReport(rows_read=job.rows_read, rows_written=writer.rows, bad_rows=errors.count,
                       seconds=time.perf_counter() - started, output=output,
                       errors_path=errors.path if errors.count else None, workers=workers,
                       startup_seconds=job.startup_seconds, peak_rss_bytes=_peak_rss())


@dataclass
class _Done:
    """A processed chunk: its results (in row order) and its bad rows."""

    chunk: Chunk
    result: Any
    bad: list[tuple[int | None, int | None, str]] = field(default_factory=list)


class _Fatal(Exception):
    """Wraps an error that is not about one row (it ends the run whatever on_error says)."""


class _Job:
    def __init__(self, svc: Service, api: Any, reader: Reader, writer: Writer,
                 errors: ErrorsFile, *, table_mode: bool, workers: int, stop: bool,
                 max_errors: int, progress: ProgressSink | None) -> None:
        self.svc = svc
        self.api = api
        self.reader = reader
        self.writer = writer
        self.errors = errors
        self.table_mode = table_mode
        self.workers = workers
        self.stop = stop
        self.max_errors = max_errors
        self.progress = progress
        self.in_flight = max(2, 2 * workers)
        self.rows_read = 0
        self.startup_seconds = 0.0
        self.failed_rows = 0  # rows found bad so far, to stop splitting when past max_errors

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.calls = ThreadPoolExecutor(self.in_flight, thread_name_prefix="batch-call")
        read = ThreadPoolExecutor(1, thread_name_prefix="batch-read")
        write = ThreadPoolExecutor(1, thread_name_prefix="batch-write")
        restore = _tune(self.svc, self.api, table_mode=self.table_mode, workers=self.workers,
                        chunk_rows=self.reader.chunk_rows)
        pending: deque[asyncio.Future[_Done]] = deque()
        chunks = iter(self.reader)
        # The first chunk is read while the runners start.
        upcoming = loop.run_in_executor(read, next, chunks, None)
        try:
            started = time.perf_counter()
            await self.svc.startup(runner_mode="process" if self.workers else "local")
            self.startup_seconds = time.perf_counter() - started
            if self.progress is not None:
                self.progress.start(self.reader.total, self.reader.unit)
            while True:
                chunk = await upcoming
                if chunk is None:
                    break
                upcoming = loop.run_in_executor(read, next, chunks, None)
                pending.append(asyncio.ensure_future(self._process(chunk)))
                while pending and (len(pending) >= self.in_flight or pending[0].done()):
                    await self._write(await pending.popleft(), write)
            while pending:
                await self._write(await pending.popleft(), write)
            await loop.run_in_executor(write, self.writer.finish)
        except BaseException as error:
            for future in pending:
                future.cancel()
            await asyncio.gather(upcoming, *pending, return_exceptions=True)
            self.writer.abort()
            if isinstance(error, _Fatal):
                raise error.args[0] from None
            raise
        finally:
            try:
                await self.svc.shutdown()
            finally:
                restore()
                self.calls.shutdown(wait=False, cancel_futures=True)
                read.shutdown(wait=True, cancel_futures=True)  # before the file closes
                write.shutdown(wait=True)

    # ----- one chunk ----------------------------------------------------------------------

    async def _process(self, chunk: Chunk) -> _Done:
        loop = asyncio.get_running_loop()
        bad: list[tuple[int | None, int | None, str]] = list(chunk.bad)
        if chunk.rows == 0:
            return _Done(chunk, None, bad)
        if not self.table_mode:
            return await self._process_rows(chunk, bad)
        prepared = await loop.run_in_executor(self.calls, tables.prepare, chunk, self.api.input)
        bad += [(row, None, message) for row, message in prepared.bad]
        if not len(prepared.positions):
            return _Done(chunk, None, bad)
        parts, failed = await self._isolate(prepared.value, prepared.positions)
        bad += failed
        return _Done(chunk, tables.merge(parts) if parts else None, bad)

    async def _isolate(self, value: Any, positions: np.ndarray,
                       ) -> tuple[list[Any], list[tuple[int | None, int | None, str]]]:
        """Call the API on ``value``; when it fails, on each half, down to the failing rows."""
        try:
            return [await self._call(value, len(positions))], []
        except _Fatal:
            raise
        except Exception as error:
            if len(positions) == 1:
                self.failed_rows += 1
                return [], [(int(positions[0]), None, _message(error))]
            if self.failed_rows > self.max_errors:
                raise _Fatal(_too_many(self.max_errors, error)) from None
        middle = len(positions) // 2
        parts, bad = await self._isolate(tables.take(value, 0, middle), positions[:middle])
        if bad and self.stop:
            return parts, bad  # the first bad row is all a stopping run needs
        more_parts, more_bad = await self._isolate(tables.take(value, middle, len(positions)),
                                                   positions[middle:])
        return parts + more_parts, bad + more_bad

    async def _process_rows(self, chunk: Chunk,
                            bad: list[tuple[int | None, int | None, str]]) -> _Done:
        loop = asyncio.get_running_loop()
        items = await loop.run_in_executor(self.calls, tables.prepare_rows, chunk,
                                           self.api.input)
        bad += [(row, None, error) for row, _value, error in items if error is not None]
        good = [(row, value) for row, value, error in items if error is None]
        answers = await asyncio.gather(*(self._call_one(value) for _row, value in good),
                                       return_exceptions=True)
        results = []
        for (row, _value), answer in zip(good, answers, strict=True):
            if isinstance(answer, _Fatal):
                raise answer
            if isinstance(answer, BaseException):
                bad.append((row, None, _message(answer)))
            else:
                results.append(answer)
        bad.sort(key=lambda item: (item[0] is None, item[0] or 0))
        return _Done(chunk, tables.rows_of(results) if results else None, bad)

    async def _call(self, value: Any, rows: int) -> Any:
        result = await self._invoke(value)
        try:
            return tables.results_of(result, rows, self.api.name)
        except InvalidArgument as error:
            raise _Fatal(error) from None

    async def _call_one(self, value: Any) -> Any:
        result = await self._invoke(value)
        # One row's answer as a one-item list (the seed's single-row prediction): its item.
        if isinstance(result, (list, tuple, np.ndarray)) and len(result) == 1:
            return result[0]
        return result

    async def _invoke(self, value: Any) -> Any:
        try:
            if self.api.is_async:
                return await self.api.callable(value)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.calls, self.api.callable, value)
        except (MissingDependency, InvalidArgument) as error:
            # A missing framework or a misuse of the runner (not a bad value: that is BadInput
            # or the model's own exception) fails every row alike: no row is to blame.
            if isinstance(error, MissingDependency) or type(error) is InvalidArgument:
                raise _Fatal(error) from None
            raise

    # ----- in order -----------------------------------------------------------------------

    async def _write(self, done: _Done, write: ThreadPoolExecutor) -> None:
        for row, line, message in done.bad:
            if self.stop:
                raise BadRow(row, line, message)
            self.errors.write(row, line, message, _row_input(done.chunk, row))
            if self.errors.count > self.max_errors:
                raise _too_many(self.max_errors, message)
        if done.result is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(write, self.writer.write, done.result)
        self.rows_read += done.chunk.rows
        if self.progress is not None:
            self.progress.advance(self.writer.rows, self.reader.progress())


class ErrorsFile:
    """Bad rows as JSON lines, opened on the first one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._stream: Any = None

    def write(self, row: int | None, line: int | None, message: str, value: Any) -> None:
        import orjson

        if self._stream is None:
            self._stream = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        record: dict[str, Any] = {"row": row, "error": message}
        if line is not None:
            record["line"] = line
        if value is not None:
            record["input"] = value
        self._stream.write(orjson.dumps(record, default=_jsonable,
                                        option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
        self.count += 1

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()


def _jsonable(value: Any) -> Any:
    from dosirak.io.encoding import to_jsonable

    try:
        return to_jsonable(value)
    except TypeError:
        return repr(value)


def _row_input(chunk: Chunk, row: int | None) -> Any:
    if row is None or chunk.data is None:
        return None
    index = row - chunk.start
    data = chunk.data
    if hasattr(data, "iloc"):
        return data.iloc[index].to_dict()
    value = data[index]
    if hasattr(value, "message"):  # an unreadable JSON line: nothing to show but the error
        return None
    return value.tolist() if isinstance(value, np.ndarray) else value


def _message(error: BaseException) -> str:
    text = str(error)
    return text if isinstance(error, DosirakError) else f"{type(error).__name__}: {text}"


def _too_many(limit: int, last: Any) -> InvalidArgument:
    return InvalidArgument(f"more than {limit} rows failed (the last: {last}); the problem is "
                           "probably not in the rows: check the API with `dosirak run`, or raise "
                           "--max-errors")


def _tune(svc: Service, api: Any, *, table_mode: bool, workers: int,
          chunk_rows: int) -> Callable[[], None]:
    """Set the service up for a batch run; returns the function that undoes it."""
    saved: list[tuple[Any, str, Any]] = []

    def setting(owner: Any, name: str, value: Any) -> None:
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    for runner in svc.runners:
        if workers:
            setting(runner, "workers", workers)
        for method in runner.methods.values():
            if table_mode:
                setting(method, "max_batch_size", 1)  # a size of one: no dispatcher
            else:
                setting(method, "max_latency_ms", BATCH_LATENCY_MS)
    if api.batchable:  # a class-style batchable API has its own dispatcher
        setting(api, "max_batch_size", max(chunk_rows, api.max_batch_size or 0))
        setting(api, "max_latency_ms", BATCH_LATENCY_MS)

    def restore() -> None:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)

    return restore


def _peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux counts KiB
