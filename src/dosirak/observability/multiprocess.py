"""The directory where every process of one server writes its metrics (Prometheus multiprocess).

The supervisor creates it before starting any worker, so the workers inherit
``PROMETHEUS_MULTIPROC_DIR`` and each writes its own memory-mapped files there:

    >>> directory = MetricsDirectory.create()      # in the supervisor, before spawning
    >>> ...                                        # a worker exits, is reaped:
    >>> directory.process_exited(pid)              # before starting its replacement
    >>> directory.close()                          # at shutdown

When a process exits, its live gauges (requests in progress, queue depths) are deleted, since
nothing is in progress in a dead process any more. Its counters and histograms are folded into
one file of totals (named for pid 0, which no process has): Prometheus counters must never go
down, and merging keeps the directory from growing by a file per restart. Renderers read under
a shared lock and the fold runs under an exclusive one, so no scrape sees a count twice or not
at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
# File kinds whose values add up across processes; the others are gauges, handled by
# prometheus_client's mark_process_dead (live ones deleted, the rest kept with their pid label).
_SUMMED_KINDS = ("counter", "histogram", "summary")
_TOTALS_PID = 0
_LOCK_NAME = ".lock"  # not *.db, so the collector's glob skips it


def current_directory() -> Path | None:
    """The multiprocess directory of this process (from the environment), if any."""
    path = os.environ.get(ENV)
    return Path(path) if path else None


@contextlib.contextmanager
def reading(directory: Path) -> Iterator[None]:
    """Hold the shared lock of ``directory`` while its files are read for a scrape."""
    with _locked(directory, fcntl.LOCK_SH):
        yield


class MetricsDirectory:
    """A private metrics directory owned by the supervisor; see the module docstring."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, parent: str | os.PathLike[str] | None = None,
               set_environment: bool = True) -> MetricsDirectory:
        """Make a fresh private directory (mode 0700) and, by default, export it in ``ENV`` so
        that the processes started from now on write their metrics there."""
        path = Path(tempfile.mkdtemp(prefix="dosirak-metrics-", dir=parent))
        (path / _LOCK_NAME).touch()
        if set_environment:
            os.environ[ENV] = str(path)
        return cls(path)

    def process_exited(self, pid: int) -> None:
        """Account for the exit of process ``pid``: drop its live gauges, fold its totals."""
        # Imported here: the supervisor needs prometheus_client only once a worker has exited,
        # not while its first worker starts (~20-60 ms of CPU taken from that worker's start).
        from prometheus_client import multiprocess

        with _locked(self.path, fcntl.LOCK_EX):
            multiprocess.mark_process_dead(pid, str(self.path))
            for kind in _SUMMED_KINDS:
                source = self.path / f"{kind}_{pid}.db"
                if source.exists():
                    _add_into(self.path / f"{kind}_{_TOTALS_PID}.db", source)
                    source.unlink()

    def files(self) -> list[str]:
        """Names of the metric files now in the directory (for checks and tests)."""
        return sorted(path.name for path in self.path.glob("*.db"))

    def close(self) -> None:
        """Remove the directory and, if it is the exported one, the environment variable."""
        if os.environ.get(ENV) == str(self.path):
            del os.environ[ENV]
        shutil.rmtree(self.path, ignore_errors=True)


def _add_into(totals_path: Path, source: Path) -> None:
    from prometheus_client.mmap_dict import MmapedDict

    totals = MmapedDict(str(totals_path))
    try:
        for key, value, _timestamp, _position in MmapedDict.read_all_values_from_file(
                str(source)):
            current, _ = totals.read_value(key)
            totals.write_value(key, current + value, 0.0)
    finally:
        totals.close()


@contextlib.contextmanager
def _locked(directory: Path, mode: int) -> Iterator[None]:
    with open(directory / _LOCK_NAME, "a+b") as lock:
        fcntl.flock(lock, mode)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
