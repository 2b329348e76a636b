"""Export side of archives: compression choices, round trips, failures that leave nothing."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from dosirak import models, picklable_model
from dosirak.exceptions import InvalidArgument, StoreCorrupted
from dosirak.store.archive import GZIP_MAGIC, ZSTD_MAGIC, parse_compression

WEIGHTS = np.random.default_rng(0).standard_normal(600_000).astype(np.float32)  # 2.4 MB


@pytest.fixture
def model() -> models.Model:
    return picklable_model.save_model("weights", {"w": WEIGHTS}, custom_objects={"k": [1, 2]})


def _codec_of(path: Path) -> str:
    head = path.read_bytes()[:512]
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    assert head[257:262] == b"ustar", "neither compressed nor a tar archive"
    return "none"


@pytest.mark.parametrize("compression", ["none", "zstd", "zstd:3", "zstd:-5", "gzip", "gzip:6"])
def test_every_compression_round_trips(model: models.Model, tmp_path: Path,
                                       compression: str) -> None:
    seen: list[int] = []
    out = Path(models.export_model(model.tag, str(tmp_path / "w"), compression=compression,
                                   progress=seen.append))
    assert out == tmp_path / "w.dosirakmodel"
    assert _codec_of(out) == compression.partition(":")[0]
    assert sum(seen) >= model.info.size  # uncompressed tar bytes: headers, data, padding
    if compression == "none":
        assert sum(seen) == out.stat().st_size
    models.delete(model.tag)
    back = models.import_model(str(out))
    back.verify()
    assert back.info.manifest == model.info.manifest
    assert np.array_equal(picklable_model.load_model(back.tag)["w"], WEIGHTS)
    assert back.custom_objects == {"k": [1, 2]}


def test_the_default_is_a_plain_tar_and_zstd_means_level_1(model: models.Model,
                                                           tmp_path: Path) -> None:
    out = Path(models.export_model(model.tag, str(tmp_path)))
    assert _codec_of(out) == "none"
    assert parse_compression("zstd") == ("zstd", 1)


def test_compressible_weights_shrink(tmp_path: Path) -> None:
    zeros = picklable_model.save_model("zeros", np.zeros(1_000_000, dtype=np.float32))
    out = Path(models.export_model(zeros.tag, str(tmp_path), compression="zstd"))
    assert out.stat().st_size < zeros.info.size / 20


@pytest.mark.parametrize("spec", ["lz4", "zstd:abc", "zstd:99", "zstd:-8", "none:1", "gzip:10",
                                  "ZSTD", ""])
def test_unknown_compressions_are_refused(model: models.Model, tmp_path: Path, spec: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InvalidArgument, match="compression"):
        models.export_model(model.tag, str(out), compression=spec)
    assert os.listdir(out) == []


@pytest.mark.parametrize("compression", ["none", "zstd", "gzip"])
def test_a_failed_export_leaves_nothing(model: models.Model, tmp_path: Path,
                                        compression: str) -> None:
    # The stored file shrank after the manifest was written: the export must stop, not
    # publish an archive that import would refuse.
    stored = model.path / "saved_model.pkl"
    os.truncate(stored, stored.stat().st_size - 10)
    info = models.ModelInfo.from_dict(model.info.to_dict())
    from dosirak.store.archive import export_entry

    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(StoreCorrupted, match="bytes but its manifest says"):
        export_entry(model.path, model.tag, info.to_dict(), str(out / "a"),
                     compression=compression)
    assert os.listdir(out) == []


def test_tarfile_lists_an_uncompressed_export(model: models.Model, tmp_path: Path) -> None:
    out = models.export_model(model.tag, str(tmp_path), compression="none")
    with tarfile.open(out) as archive:
        names = archive.getnames()
    assert names == ["model.yaml", *model.info.manifest]


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_an_export_removes_only_the_leftovers_of_dead_local_exports(
    model: models.Model, tmp_path: Path
) -> None:
    from dosirak.store.archive import _HOST

    dead = _dead_pid()
    leftovers = {
        f"old.dosirakmodel.partial-{dead}-0123abcd@{_HOST}": False,  # killed here: removed
        f"old.dosirakmodel.partial-{dead}-0123abce": False,  # from before hosts were recorded
        f"old.dosirakmodel.partial-{os.getpid()}-0123abcd@{_HOST}": True,  # still exporting
        f"old.dosirakmodel.partial-{dead}-0123abcd@elsewhere": True,  # another machine's
        "notes.partial-1-x": True,  # not an export's name
    }
    folder = tmp_path / "out"
    folder.mkdir()
    for name in leftovers:
        (folder / name).write_bytes(b"x" * 1000)
    out = Path(models.export_model(model.tag, str(folder)))
    assert sorted(os.listdir(folder)) == sorted(
        [out.name, *(name for name, kept in leftovers.items() if kept)])
