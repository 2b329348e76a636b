"""Processes killed with SIGKILL mid-save, mid-import and mid-delete leave a sound store.

Each round forks a child that works on the store in a loop and kills it at a random moment, so
kills land in every phase: writing files, hashing, fsync, rename, cleanup. Afterwards every version
on disk must be complete and verify, and the next save must work and sweep up what the dead left.
"""

from __future__ import annotations

import functools
import os
import random
import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dosirak import models
from dosirak.frameworks import picklable_model
from dosirak.models import save
from dosirak.store import model_store

PAYLOAD = os.urandom(2 << 20)  # a few MB, so a save spends milliseconds in each phase


def _kill_repeatedly(work: Callable[[Callable[[str], None]], None], *, kills: int,
                     max_delay: float, seed: int) -> tuple[list[str], int]:
    """Fork ``kills`` children running ``work`` forever, SIGKILL each at a random moment.

    ``work`` gets a ``report(text)`` that sends a line to the parent (e.g. a completed tag).
    Returns every line reported and how many children died with a draft or trash entry of
    theirs on disk (killed half way through a write). A child that stops by itself fails the test.
    """
    rng = random.Random(seed)
    reported: list[str] = []
    interrupted = 0
    for _ in range(kills):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            try:
                os.close(read_end)
                work(functools.partial(_send, write_end))
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(1)
        os.close(write_end)
        time.sleep(rng.uniform(0, max_delay))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(read_end, "rb") as lines:
            reported += lines.read().decode().split()
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
            f"the worker stopped by itself (status {status}) instead of being killed"
        )
        interrupted += any(entry.startswith(f"{pid}-") for entry in _scratch_entries())
    return reported, interrupted


def _scratch_entries() -> list[str]:
    root = model_store().root
    return [e for d in (".tmp", ".trash") if (root / d).exists() for e in os.listdir(root / d)]


def _send(fd: int, text: str) -> None:
    os.write(fd, f"{text}\n".encode())


def _assert_every_version_is_whole(name: str) -> list[models.Model]:
    """Every version directory on disk (not only those list() shows) is complete and verifies."""
    store = model_store()
    found = []
    for version in store.versions(name):
        model = models.get(f"{name}:{version}", verify=True)
        assert (model.path / "model.yaml").is_file()
        found.append(model)
    assert {m.tag for m in found} == {m.tag for m in models.list(name)}
    return found


def _assert_next_save_cleans_up() -> None:
    saved = picklable_model.save_model("after", b"ok")
    assert models.get(saved.tag, verify=True).load_model() == b"ok"
    assert _scratch_entries() == []


def test_killed_saves_leave_only_whole_versions() -> None:
    def work(report: Callable[[str], None]) -> None:
        while True:
            report(str(picklable_model.save_model("crash", PAYLOAD).tag))

    reported, interrupted = _kill_repeatedly(work, kills=30, max_delay=0.08, seed=1)
    assert interrupted >= 10  # most kills did land half way through a save
    listed = _assert_every_version_is_whole("crash")
    for model in listed:
        assert model.load_model() == PAYLOAD
    tags = {str(m.tag) for m in listed}
    assert set(reported) <= tags  # every save that returned is there
    assert len(tags - set(reported)) <= 30  # at most one unreported save per kill
    assert len(reported) > 0
    assert models.get("crash:latest").tag == models.list("crash")[0].tag
    _assert_next_save_cleans_up()


def test_killed_imports_never_tear_the_version(tmp_path: Path) -> None:
    archives = []
    for index in range(2):  # two archives of one tag with different content
        picklable_model.save_model("imp:v1", bytes([index]) * len(PAYLOAD))
        archives.append(models.export_model("imp:v1", str(tmp_path / f"{index}.dosirakmodel")))
        models.delete("imp:v1")
    models.import_model(archives[0])

    def work(report: Callable[[str], None]) -> None:
        for round_ in range(10**9):
            models.import_model(archives[round_ % 2], overwrite=True)
            report(str(round_))

    reported, interrupted = _kill_repeatedly(work, kills=30, max_delay=0.08, seed=2)
    assert len(reported) > 0 and interrupted >= 10
    (model,) = _assert_every_version_is_whole("imp")
    assert model.load_model()[:1] in (b"\x00", b"\x01")
    _assert_next_save_cleans_up()


def _save_many_files(name: str, count: int, size: int) -> models.Model:
    def write(directory: Path) -> dict[str, Any]:
        for index in range(count):
            (directory / f"part-{index:03d}.bin").write_bytes(os.urandom(size))
        return {}

    return save(name, module="dosirak.picklable_model", write=write,
                default_signatures={"__call__": {}})


def test_killed_deletes_leave_whole_versions_or_none() -> None:
    def work(report: Callable[[str], None]) -> None:
        while True:
            model = _save_many_files("churn", 10, 16_000)
            models.delete(model.tag)
            report(str(model.tag))

    reported, interrupted = _kill_repeatedly(work, kills=30, max_delay=0.15, seed=3)
    assert len(reported) > 0 and interrupted >= 10
    for model in _assert_every_version_is_whole("churn"):
        assert len(model.info.manifest) == 10
        assert str(model.tag) not in reported  # a delete that returned is final
    _assert_next_save_cleans_up()


@pytest.mark.parametrize("seed", [4])
def test_kills_during_mixed_work_keep_the_store_usable(seed: int, tmp_path: Path) -> None:
    """Saves, imports and deletes interleaved in one child, killed again and again."""
    picklable_model.save_model("mixed:seed", PAYLOAD)
    archive = models.export_model("mixed:seed", str(tmp_path / "seed.dosirakmodel"))

    def work(report: Callable[[str], None]) -> None:
        rng = random.Random(os.getpid())
        while True:
            choice = rng.random()
            if choice < 0.4:
                picklable_model.save_model("mixed", PAYLOAD[: rng.randrange(1, len(PAYLOAD))])
            elif choice < 0.7:
                models.import_model(archive, overwrite=True)
            else:
                versions = [m for m in models.list("mixed") if m.tag.version != "seed"]
                if versions:
                    models.delete(versions[-1].tag)
            report("step")

    _, interrupted = _kill_repeatedly(work, kills=20, max_delay=0.08, seed=seed)
    assert interrupted >= 5
    for model in _assert_every_version_is_whole("mixed"):
        data = model.load_model()
        assert PAYLOAD.startswith(data)
    assert models.get("mixed:seed", verify=True).load_model() == PAYLOAD
    _assert_next_save_cleans_up()
