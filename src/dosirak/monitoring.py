"""``dosirak.monitor``: log what a model saw and answered, for drift analysis.

    >>> @svc.api(input=NumpyNdarray(), output=NumpyNdarray())
    ... def classify(x: np.ndarray) -> np.ndarray:
    ...     with dosirak.monitor("iris_classifier_prediction") as mon:
    ...         mon.log(x[0][0], name="sepal_length", role="feature", data_type="numerical")
    ...         result = runner.predict.run(x)
    ...         mon.log(int(result[0]), name="pred", role="prediction",
    ...                 data_type="categorical")
    ...     return result

Each ``with`` block writes one record, a JSON object on one line, when it ends (a block left by
an exception writes nothing). Files, under ``monitoring.log_path`` of the serving configuration
(``monitoring`` in the working directory by default):

- ``<log_path>/<monitor name>/data.<pid>.jsonl``: the records of one process (API workers
  never share a file, so lines never interleave), rotated past ``monitoring.max_bytes`` to
  ``data.<pid>.jsonl.1`` ... ``.<backup_count>`` (the oldest is dropped);
- ``<log_path>/<monitor name>/schema.json``: the columns (``name``, ``role``, ``data_type``),
  rewritten atomically when a record brings a new column.

A record is ``{"timestamp": "<UTC ISO 8601>", "request_id": "<id or null>", "<column>":
<value>, ...}``; values are JSON (numpy scalars and arrays become numbers and lists). Roles are
``feature``, ``prediction``, ``target`` or any other word of yours; data types ``numerical``,
``categorical``, ``numerical_sequence``, ``text`` or your own. Read them all with
``pandas.concat(pandas.read_json(path, lines=True) for path in glob(".../data.*.jsonl*"))``.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dosirak.exceptions import InvalidArgument
from dosirak.io.encoding import dumps

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_RESERVED = ("timestamp", "request_id")
DEFAULT_LOG_PATH = "monitoring"
DEFAULT_MAX_BYTES = 64 << 20
DEFAULT_BACKUP_COUNT = 5


class _Settings:
    log_path = Path(DEFAULT_LOG_PATH)
    max_bytes = DEFAULT_MAX_BYTES
    backup_count = DEFAULT_BACKUP_COUNT


def configure(log_path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES,
              backup_count: int = DEFAULT_BACKUP_COUNT) -> None:
    """Where monitors write and when they rotate (the server calls it from its configuration)."""
    _Settings.log_path = Path(log_path)
    _Settings.max_bytes = max_bytes
    _Settings.backup_count = backup_count
    with _WRITERS_LOCK:
        for writer in _WRITERS.values():
            writer.close()
        _WRITERS.clear()


class Monitor:
    """The record of one ``with dosirak.monitor(name)`` block."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.columns: dict[str, dict[str, str]] = {}
        self.values: dict[str, Any] = {}

    def log(self, value: Any, name: str, role: str, data_type: str) -> None:
        """Add the column ``name`` to this record."""
        if not isinstance(name, str) or not name or name in _RESERVED:
            raise InvalidArgument(f"monitor {self.name!r}: column name {name!r} must be a "
                                  f"non-empty string other than {list(_RESERVED)}")
        for what, text in (("role", role), ("data_type", data_type)):
            if not isinstance(text, str) or not text:
                raise InvalidArgument(f"monitor {self.name!r}: {what} of {name!r} must be a "
                                      f"non-empty string such as 'feature' or 'numerical', "
                                      f"got {text!r}")
        self.columns[name] = {"name": name, "role": role, "data_type": data_type}
        self.values[name] = value

    def log_batch(self, values: Any, name: str, role: str, data_type: str) -> None:
        """Add a column holding a sequence (a batch's values, an embedding)."""
        self.log(list(values), name, role, data_type)


@contextmanager
def monitor(name: str) -> Iterator[Monitor]:
    """A ``Monitor`` whose record is written when the block ends without an exception."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument(f"monitor name {name!r} must be 1-128 letters, digits, '.', '_' "
                              "or '-', starting with a letter or digit (it names a directory)")
    record = Monitor(name)
    yield record
    if record.values:
        _writer(name).write(record)


def _request_id() -> str | None:
    from dosirak.observability.request_id import current_request_id

    value = current_request_id.get()
    return None if value == "-" else value


class _Writer:
    """The files of one monitor in this process: one JSON line per record, rotated by size."""

    def __init__(self, name: str) -> None:
        self.directory = _Settings.log_path / name
        self.path = self.directory / f"data.{os.getpid()}.jsonl"
        self.max_bytes = _Settings.max_bytes
        self.backup_count = _Settings.backup_count
        self.lock = threading.Lock()
        self.columns: dict[str, dict[str, str]] = {}
        self.stream: Any = None
        self.size = 0

    def write(self, record: Monitor) -> None:
        line = dumps({"timestamp": datetime.datetime.now(datetime.UTC).isoformat(),
                      "request_id": _request_id(), **record.values}) + b"\n"
        with self.lock:
            if self.stream is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                self.stream = open(self.path, "ab")  # noqa: SIM115 - kept open between records
                self.size = self.stream.tell()
            if any(self.columns.get(k) != v for k, v in record.columns.items()):
                self._write_schema(record.columns)
            if self.size and self.size + len(line) > self.max_bytes:
                self._rotate()
            self.stream.write(line)
            self.stream.flush()
            self.size += len(line)

    def _write_schema(self, columns: dict[str, dict[str, str]]) -> None:
        schema_path = self.directory / "schema.json"
        try:
            known = {c["name"]: c for c in json.loads(schema_path.read_text())["columns"]}
        except (OSError, ValueError, KeyError, TypeError):
            known = {}
        known.update(columns)
        self.columns = dict(known)
        temporary = self.directory / f".schema.{os.getpid()}.tmp"
        temporary.write_text(json.dumps({"monitor": self.directory.name,
                                         "columns": list(known.values())}, indent=2) + "\n")
        os.replace(temporary, schema_path)  # readers see the old schema or the new, whole

    def _rotate(self) -> None:
        self.stream.close()
        for index in range(self.backup_count - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        if self.backup_count > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()
        self.stream = open(self.path, "ab")  # noqa: SIM115
        self.size = 0

    def close(self) -> None:
        with self.lock:
            if self.stream is not None:
                self.stream.close()
                self.stream = None


_WRITERS: dict[str, _Writer] = {}
_WRITERS_LOCK = threading.Lock()


def _writer(name: str) -> _Writer:
    writer = _WRITERS.get(name)
    if writer is None or writer.path.name != f"data.{os.getpid()}.jsonl":  # forked meanwhile
        with _WRITERS_LOCK:
            writer = _WRITERS.get(name)
            if writer is None or writer.path.name != f"data.{os.getpid()}.jsonl":
                writer = _WRITERS[name] = _Writer(name)
    return writer


__all__ = ["Monitor", "configure", "monitor"]
