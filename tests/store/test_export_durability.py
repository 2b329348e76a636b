"""Local exports are durable and atomic: the final name holds a whole archive or nothing.

Two checks, both without tracing the process:

- the page cache: once ``export_model`` returns, none of the archive's pages are dirty or under
  writeback (Linux's ``cachestat``), so its data reached the disk before the call returned;
- SIGKILL: a real ``python`` subprocess exporting is killed half way through (held at a known
  byte count by its own progress callback), right after an export returned, and at random
  moments. A kill keeps the page cache, so it checks the rename, not the fsync; the cachestat
  check covers the fsync.
"""

from __future__ import annotations

import ctypes
import errno
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dosirak import models
from dosirak.models import save

FILES = 4
FILE_SIZE = 4 << 20  # 16 MiB in all: an export takes tens of milliseconds, a kill can land in it
SUFFIX = ".dosirakmodel"
CACHESTAT = 451  # the syscall's number on every Linux architecture (since Linux 6.5)

CHILD = """
import sys, time
from dosirak import models

tag, dest, compression, hold_at, rounds = sys.argv[1:]
written = 0

def progress(count):
    global written
    written += count
    if written >= int(hold_at):
        print("holding", flush=True)
        time.sleep(60)  # half way through an export, until the parent kills this process

print("ready", flush=True)
for _ in range(int(rounds)):
    models.export_model(tag, dest, compression=compression, progress=progress)
    print("exported", flush=True)
time.sleep(60)
"""


@pytest.fixture
def model() -> models.Model:
    def write(directory: Path) -> dict[str, object]:
        for index in range(FILES):
            (directory / f"part-{index}.bin").write_bytes(os.urandom(FILE_SIZE))
        return {}

    return save("durable", module="dosirak.picklable_model", write=write,
                default_signatures={"__call__": {}})


class _Range(ctypes.Structure):
    _fields_ = [("offset", ctypes.c_uint64), ("length", ctypes.c_uint64)]


class _PageCacheState(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in
                ("cached", "dirty", "writeback", "evicted", "recently_evicted")]


def _unflushed_pages(path: Path) -> int:
    """Pages of ``path`` that are dirty or being written back: data not yet on the disk."""
    libc = ctypes.CDLL(None, use_errno=True)
    whole, state = _Range(0, 0), _PageCacheState()  # a length of 0 means to the end
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.syscall(CACHESTAT, fd, ctypes.byref(whole), ctypes.byref(state), 0) != 0:
            code = ctypes.get_errno()
            if code == errno.ENOSYS:
                pytest.skip("the kernel has no cachestat (Linux 6.5+) to observe dirty pages")
            raise OSError(code, os.strerror(code), str(path))
    finally:
        os.close(fd)
    return int(state.dirty + state.writeback)


@pytest.mark.skipif(sys.platform != "linux", reason="cachestat is a Linux system call")
@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_an_export_is_on_disk_when_it_returns(model: models.Model, tmp_path: Path,
                                              compression: str) -> None:
    # Control: a file written the same way but not fsynced shows dirty pages, and fsync clears
    # them; so zero dirty pages below means the export flushed its data, not that none were kept.
    control = tmp_path / "control.bin"
    with open(control, "wb") as stream:
        stream.write(os.urandom(FILE_SIZE))
        stream.flush()
        assert _unflushed_pages(control) > 0
        os.fsync(stream.fileno())
    if _unflushed_pages(control) > 0:
        pytest.skip(f"{tmp_path} keeps pages dirty after fsync (tmpfs?); nothing to observe")

    folder = tmp_path / "out"
    folder.mkdir()
    out = Path(models.export_model(model.tag, str(folder), compression=compression))
    assert out.stat().st_size > 0
    assert _unflushed_pages(out) == 0
    assert os.listdir(folder) == [out.name]


@contextmanager
def _exporter(tag: str, dest: Path, *, compression: str = "none", hold_at: int = 1 << 62,
              rounds: int = 1) -> Iterator[subprocess.Popen[str]]:
    """A ``python`` process exporting ``tag`` to ``dest``; SIGKILLed when the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, tag, str(dest), compression, str(hold_at), str(rounds)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        yield process
    finally:
        process.kill()
        process.wait(timeout=30)
        assert process.stdout is not None
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL


def _assert_whole(archive: Path, model: models.Model, home: Path,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    """``archive`` imports into an empty store and holds exactly the model's files."""
    with monkeypatch.context() as scope:
        scope.setenv("DOSIRAK_HOME", str(home))
        imported = models.import_model(str(archive))
        imported.verify()
        assert imported.tag == model.tag and imported.info.manifest == model.info.manifest


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_an_export_killed_half_way_leaves_no_archive(
    model: models.Model, tmp_path: Path, compression: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    final = out / f"m{SUFFIX}"
    with _exporter(str(model.tag), final, compression=compression,
                   hold_at=model.info.size // 2) as process:
        assert process.stdout is not None and process.stdout.readline() == "holding\n"
        (partial,) = os.listdir(out)  # the kill lands while the temporary file is written
    assert partial.startswith(f"{final.name}.partial-{process.pid}-")
    assert not final.exists()
    assert list(out.glob(f"*{SUFFIX}")) == []  # nothing a later import *.dosirakmodel picks up

    # The next export to the folder removes the dead process's leftover (8 kills left 755 MB).
    assert models.export_model(model.tag, str(final), compression=compression) == str(final)
    assert os.listdir(out) == [final.name]
    _assert_whole(final, model, tmp_path / "home-after", monkeypatch)


def test_an_export_killed_after_it_returned_is_whole(model: models.Model, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    final = tmp_path / "out" / f"m{SUFFIX}"
    with _exporter(str(model.tag), final) as process:
        assert process.stdout is not None and process.stdout.readline() == "exported\n"
    assert os.listdir(final.parent) == [final.name]
    _assert_whole(final, model, tmp_path / "home-after", monkeypatch)


def test_exports_killed_at_random_moments_leave_a_whole_archive_or_none(
    model: models.Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = Path(models.export_model(model.tag, str(tmp_path / f"reference{SUFFIX}")))
    expected = reference.read_bytes()  # a plain export is byte for byte reproducible
    rng = random.Random(7)
    outcomes = []
    for round_ in range(8):
        final = tmp_path / f"round-{round_}" / f"m{SUFFIX}"
        # The child exports over and over to one name, replacing the archive each time; in odd
        # rounds the kill comes after the first export returned, so it lands in a replacement.
        with _exporter(str(model.tag), final, rounds=1000) as process:
            if round_ % 2:
                assert process.stdout is not None and process.stdout.readline() == "exported\n"
            time.sleep(rng.uniform(0, 0.15))
        if final.exists():
            assert final.read_bytes() == expected, f"round {round_}: a torn archive"
        names = os.listdir(final.parent) if final.parent.exists() else []
        assert all(name == final.name or name.startswith(f"{final.name}.partial-")
                   for name in names), names
        outcomes.append(final.exists())
    assert all(outcomes[1::2])  # a returned export stays published through later kills
    _assert_whole(final, model, tmp_path / "home-after", monkeypatch)  # round 7's, odd
