"""The versioned store on real directories and real processes: atomicity, cleanup, races."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dosirak import models
from dosirak.exceptions import AlreadyExists, ModelNotFound
from dosirak.frameworks import picklable_model
from dosirak.store import model_store
from dosirak.store.versioned_store import VersionedStore, creation_time, exchange
from dosirak.tag import Tag

FORK = multiprocessing.get_context("fork")  # children start in milliseconds, store imported


def _commit(store: VersionedStore, tag: str, data: bytes = b"x",
            created: str = "2024-01-01T00:00:00+00:00", **options: bool) -> Path:
    parsed = Tag.parse(tag)
    draft = store.new_draft()
    (draft / "weights.bin").write_bytes(data)
    info = {"name": parsed.name, "version": parsed.version, "creation_time": created}
    try:
        return store.commit(draft, parsed, info, **options)
    except BaseException:
        store.discard(draft)  # as every caller of commit does
        raise


def _dead_pid() -> int:
    child = FORK.Process(target=lambda: None)
    child.start()
    child.join()
    return child.pid or 0


def test_commit_moves_the_draft_into_place(tmp_path: Path) -> None:
    store = VersionedStore(tmp_path / "s", "model.yaml", kind="model")
    draft = store.new_draft()
    assert draft.parent == store.root / ".tmp" and draft.name.startswith(f"{os.getpid()}-")
    assert store.versions("m") == [] and store.names() == []
    (draft / "sub").mkdir()
    (draft / "sub" / "w.bin").write_bytes(b"abc")
    path = store.commit(draft, Tag("m", "v1"), {"name": "m", "version": "v1"})
    assert path == store.root / "m" / "v1" and not draft.exists()
    assert (path / "sub" / "w.bin").read_bytes() == b"abc"
    assert store.read_info(Tag("m", "v1")) == {"name": "m", "version": "v1"}
    assert store.versions("m") == ["v1"] and store.names() == ["m"]
    assert list(store.iter_tags()) == [Tag("m", "v1")]


def test_commit_refuses_an_existing_version_and_overwrite_swaps(tmp_path: Path) -> None:
    store = VersionedStore(tmp_path / "s", "model.yaml", kind="model")
    _commit(store, "m:v1", b"old")
    with pytest.raises(AlreadyExists, match="m:v1 exists already; pass overwrite=True"):
        _commit(store, "m:v1", b"new")
    assert (store.root / "m" / "v1" / "weights.bin").read_bytes() == b"old"
    _commit(store, "m:v1", b"new", overwrite=True)
    assert (store.root / "m" / "v1" / "weights.bin").read_bytes() == b"new"
    assert os.listdir(store.root / ".tmp") == [] and os.listdir(store.root / "m") == ["v1"]


def test_exchange_swaps_two_directories_atomically(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("a")
    (tmp_path / "b").mkdir()
    assert exchange(tmp_path / "a", tmp_path / "b")  # ext4, tmpfs and btrfs all offer it
    assert (tmp_path / "b" / "f").read_text() == "a" and os.listdir(tmp_path / "a") == []
    with pytest.raises(FileNotFoundError):
        exchange(tmp_path / "a", tmp_path / "missing")


def test_clean_stale_removes_dead_writers_drafts_and_the_trash(tmp_path: Path) -> None:
    store = VersionedStore(tmp_path / "s", "model.yaml", kind="model")
    mine = store.new_draft()
    dead = store.root / ".tmp" / f"{_dead_pid()}-abc"
    (dead / "deep").mkdir(parents=True)
    (dead / "deep" / "half.bin").write_bytes(b"x" * 100)
    odd = store.root / ".tmp" / "not-a-pid"
    odd.mkdir()
    trash = store.root / ".trash" / "123-x"
    trash.mkdir(parents=True)
    store.clean_stale()
    assert mine.exists()  # a live writer's draft is left alone
    assert not dead.exists() and not odd.exists() and not trash.exists()


def test_delete_hides_the_version_first_and_removes_the_empty_name(tmp_path: Path) -> None:
    store = VersionedStore(tmp_path / "s", "model.yaml", kind="model")
    _commit(store, "m:v1", created="2024-01-01T00:00:00+00:00")
    _commit(store, "m:v2", created="2024-01-02T00:00:00+00:00")
    assert store.delete("m") == Tag("m", "v2")
    assert store.versions("m") == ["v1"] and os.listdir(store.root / ".trash") == []
    assert store.delete("m:v1") == Tag("m", "v1")
    assert store.names() == [] and not (store.root / "m").exists()
    with pytest.raises(ModelNotFound, match="no model 'm:v1'"):
        store.delete("m:v1")


def test_pin_notices_a_replacement_and_a_deletion(tmp_path: Path) -> None:
    store = VersionedStore(tmp_path / "s", "model.yaml", kind="model")
    _commit(store, "m:v1", b"old")
    with store.pin(Tag("m", "v1")) as replaced:
        assert not replaced()
        _commit(store, "m:v1", b"new", overwrite=True)
        assert replaced()
    with store.pin(Tag("m", "v1")) as replaced:
        store.delete("m:v1")
        assert replaced()
    with pytest.raises(ModelNotFound):
        store.pin(Tag("m", "v1")).__enter__()


def test_stray_entries_in_the_store_are_ignored(tmp_path: Path) -> None:
    picklable_model.save_model("m", 1)
    root = model_store().root
    (root / "Backup Copy").mkdir()  # not a valid name: made by hand, not by dosirak
    (root / "m" / "Old Version").mkdir()
    (root / "notes.txt").write_text("hi")
    assert [m.tag.name for m in models.list()] == ["m"]
    assert [m.tag.name for m in models.list("m")] == ["m"]
    assert models.get("m").load_model() == 1


def test_creation_time_is_an_instant() -> None:
    early = creation_time({"creation_time": "2024-01-01T10:00:00+09:00"})
    late = creation_time({"creation_time": "2024-01-01T02:00:00+00:00"})
    assert early < late
    assert creation_time({}) < early
    assert creation_time({"creation_time": "garbage"}) < early
    naive = creation_time({"creation_time": "2024-01-01T02:00:00"})
    assert naive == late


# ----- processes -----------------------------------------------------------------------------


def _run(workers: list[Callable[[], None]], timeout: float = 60) -> None:
    processes = [FORK.Process(target=work) for work in workers]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout)
        assert process.exitcode == 0, f"worker failed with exit code {process.exitcode}"


def test_eight_processes_saving_one_name_get_eight_versions() -> None:
    barrier = FORK.Barrier(8)
    results = FORK.Queue()

    def save(index: int) -> Callable[[], None]:
        def work() -> None:
            barrier.wait(10)
            model = picklable_model.save_model("shared", os.urandom(200_000) + bytes([index]))
            results.put((str(model.tag), model.info.creation_time))

        return work

    _run([save(i) for i in range(8)])
    saved = [results.get(timeout=5) for _ in range(8)]
    tags = {tag for tag, _ in saved}
    assert len(tags) == 8
    listed = models.list("shared")
    assert {str(m.tag) for m in listed} == tags
    newest = max(saved, key=lambda pair: (pair[1], pair[0]))[0]
    assert str(models.get("shared:latest").tag) == newest == str(listed[0].tag)
    for model in listed:
        models.get(model.tag, verify=True)
    assert os.listdir(model_store().root / ".tmp") == []


def test_readers_never_see_a_partial_version() -> None:
    def write() -> None:
        for _ in range(15):
            picklable_model.save_model("busy", os.urandom(300_000))

    writers = [FORK.Process(target=write) for _ in range(2)]
    for writer in writers:
        writer.start()
    reads = checked = 0
    while any(writer.is_alive() for writer in writers) or reads == 0:
        for model in models.list("busy"):
            models.get(model.tag, verify=True)
            checked += 1
        reads += 1
    for writer in writers:
        writer.join(30)
        assert writer.exitcode == 0
    assert len(models.list("busy")) == 30
    assert reads > 3 and checked > 0


def test_saving_while_deleting_the_same_name_never_fails() -> None:
    # delete() removes the name's directory once it is empty; a save committing under that name
    # at the same moment must not lose its rename.
    deadline = time.monotonic() + 2.0

    def churn() -> None:
        while time.monotonic() < deadline:
            model = picklable_model.save_model("churn", b"x")
            with contextlib.suppress(ModelNotFound):
                models.delete(model.tag)

    _run([churn for _ in range(3)])
    assert models.list("churn") == []
    assert not (model_store().root / "churn").exists()


def test_yaml_written_by_the_store_has_no_anchors_or_aliases() -> None:
    # Imports refuse them; what dosirak writes must import.
    from dosirak.store.versioned_store import dump_yaml

    shared = {"k": [1, 2]}
    text = dump_yaml({"a": shared, "b": shared})
    assert "&" not in text and "*" not in text
    assert text.count("k:") == 2
