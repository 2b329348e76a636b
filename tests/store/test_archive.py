"""Import of ``.dosirakmodel`` archives: hostile archives are refused and change nothing."""

from __future__ import annotations

import datetime
import gzip
import hashlib
import io
import itertools
import os
import re
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
import zstandard

from dosirak import models
from dosirak.exceptions import AlreadyExists, UnsafeArchive
from dosirak.frameworks import picklable_model
from dosirak.models import Model

Member = tuple[tarfile.TarInfo, bytes | None]
LONG_NAME = "weights/" + "w" * 300 + ".bin"
PAYLOAD = os.urandom(300_000)  # incompressible, so cuts of compressed archives land in the data
# Levels of nine aliases each: a few hundred bytes that expand to 9**5 strings (9 levels, 1.3 KB,
# once made 296 MB of /metadata).
LAUGHS = b"a: &a0 [lol]\n" + b"".join(
    b"  a%d: &a%d [%s]\n" % (i, i, b", ".join([b"*a%d" % (i - 1)] * 9)) for i in range(1, 6))


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its bytes (None for directories): the store's full state."""
    found: dict[str, bytes | None] = {}
    for directory, _dirs, files in os.walk(root):
        found[os.path.relpath(directory, root)] = None
        for name in files:
            path = Path(directory, name)
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def _file(name: str, data: bytes, size: int | None = None) -> Member:
    member = tarfile.TarInfo(name)
    member.size = len(data) if size is None else size
    member.mode = 0o644
    return member, data


def _special(name: str, kind: bytes, linkname: str = "") -> Member:
    member = tarfile.TarInfo(name)
    member.type, member.linkname = kind, linkname
    if kind == tarfile.CHRTYPE:
        member.devmajor, member.devminor = 1, 3  # /dev/null
    return member, None


def _tar(members: list[Member], compression: str = "none") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for member, data in members:
            archive.addfile(member, None if data is None else io.BytesIO(data))
    raw = buffer.getvalue()
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=1).compress(raw)
    if compression == "gzip":
        return gzip.compress(raw, mtime=0)
    return raw


class Source:
    """A real saved model and the parts of its archive, ready to be altered."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.info: dict[str, Any] = yaml.safe_load((model.path / "model.yaml").read_text())
        self.files = {name: (model.path / name).read_bytes() for name in self.info["manifest"]}

    def info_bytes(self, **changes: Any) -> bytes:
        return yaml.safe_dump({**self.info, **changes}, sort_keys=False).encode()

    def members(self, info: bytes | None = None, **replace: Member | None) -> list[Member]:
        """model.yaml then every file; ``replace`` swaps (or with None drops) a file by name."""
        found = [_file("model.yaml", info or self.info_bytes())]
        for name, data in self.files.items():
            key = name.replace(".", "_")
            if key not in replace:
                found.append(_file(name, data))
            elif replace[key] is not None:
                found.append(replace[key])
        return found

    def file(self, name: str) -> Member:
        return _file(name, self.files[name])


@pytest.fixture
def source() -> Source:
    """A model saved under the tag ``victim:v1`` whose files are PAYLOAD and custom objects."""
    return Source(picklable_model.save_model("victim:v1", PAYLOAD, custom_objects={"k": 1}))


@pytest.fixture
def refuse(tmp_path: Path, dosirak_home: Path) -> Callable[..., str]:
    """Write an archive, import it, assert it is refused and the store is unchanged to the byte."""

    def check(data: bytes, *, overwrite: bool = False, error: type = UnsafeArchive) -> str:
        path = tmp_path / f"hostile-{hashlib.sha256(data).hexdigest()[:12]}.dosirakmodel"
        path.write_bytes(data)
        before = _tree(dosirak_home)
        with pytest.raises(error) as raised:
            models.import_model(str(path), overwrite=overwrite)
        assert _tree(dosirak_home) == before
        return str(raised.value)

    return check


def _without_victim(source: Source, monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Import into a store that holds another model but not the archive's tag."""
    monkeypatch.setenv("DOSIRAK_HOME", str(home))
    picklable_model.save_model("bystander", 1)


def test_a_hand_built_archive_imports(source: Source, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # The builder below makes archives that import, so refusals come from the alterations alone.
    _without_victim(source, monkeypatch, tmp_path / "other")
    for compression in ("none", "zstd", "gzip"):
        path = tmp_path / f"good-{compression}.dosirakmodel"
        path.write_bytes(_tar(source.members(), compression))
        model = models.import_model(str(path), overwrite=True)
        assert model.tag == source.model.tag
        model.verify()
        assert picklable_model.load_model(model) == PAYLOAD


HOSTILE: dict[str, tuple[Callable[[Source], list[Member]], str]] = {
    "traversal": (lambda s: [*s.members(), _file("../x", b"owned")], r"'\.\./x' climbs out"),
    "nested traversal": (lambda s: [*s.members(), _file("a/../../x", b"owned")], "climbs out"),
    "absolute path": (lambda s: [*s.members(), _file("/tmp/x", b"owned")], "absolute path"),
    "not normalised": (lambda s: [*s.members(), _file("./saved_model.pkl", b"x")],
                       "not a normalised relative path"),
    "symlink": (lambda s: s.members(saved_model_pkl=_special(
        "saved_model.pkl", tarfile.SYMTYPE, "/etc/passwd")),
        "'saved_model.pkl' is a symbolic link to '/etc/passwd'; only regular files"),
    "hard link": (lambda s: s.members(saved_model_pkl=_special(
        "saved_model.pkl", tarfile.LNKTYPE, "model.yaml")),
        "'saved_model.pkl' is a hard link to 'model.yaml'; only regular files"),
    "character device": (lambda s: [*s.members(), _special("null", tarfile.CHRTYPE)],
                         "is a device file; only regular files"),
    "block device": (lambda s: [*s.members(), _special("disk", tarfile.BLKTYPE)],
                     "is a device file"),
    "fifo": (lambda s: [*s.members(), _special("pipe", tarfile.FIFOTYPE)], "is a FIFO"),
    "tampered content": (lambda s: s.members(saved_model_pkl=_file(
        "saved_model.pkl", s.files["saved_model.pkl"][:-1] + b"\x00")),
        "'saved_model.pkl' does not match its sha256 checksum"),
    "tampered small file": (lambda s: s.members(custom_objects_pkl=_file(
        "custom_objects.pkl", s.files["custom_objects.pkl"][::-1])),
        "'custom_objects.pkl' does not match its sha256 checksum"),
    "size mismatch": (lambda s: s.members(saved_model_pkl=_file(
        "saved_model.pkl", s.files["saved_model.pkl"] + b"more")),
        r"'saved_model.pkl' is \d+ bytes but the manifest says \d+"),
    "extra file": (lambda s: [*s.members(), _file("extra.bin", b"hi")],
                   "'extra.bin' is not in the manifest"),
    "second model.yaml": (lambda s: [*s.members(), _file("model.yaml", s.info_bytes())],
                          "'model.yaml' is not in the manifest"),
    "missing file": (lambda s: s.members(saved_model_pkl=None),
                     "lacks files its manifest lists: saved_model.pkl"),
    "duplicate member": (lambda s: [*s.members(), s.file("saved_model.pkl")],
                         "'saved_model.pkl' appears twice"),
    "file and directory of one name": (lambda s: [
        _file("model.yaml", s.info_bytes(manifest={
            **s.info["manifest"], "saved_model.pkl/x": {"size": 1, "sha256": "0" * 64}})),
        *s.members()[1:]], "both as a file and as the directory"),
    "model.yaml not first": (lambda s: [*s.members()[1:], s.members()[0]],
                             "does not start with model.yaml"),
    "model.yaml as ./model.yaml": (lambda s: [_file("./model.yaml", s.info_bytes()),
                                              *s.members()[1:]], "does not start with model.yaml"),
    "model.yaml a symlink": (lambda s: [_special("model.yaml", tarfile.SYMTYPE, "/etc/passwd"),
                                        *s.members()[1:]], "does not start with model.yaml"),
    "empty archive": (lambda s: [], "does not start with model.yaml"),
    "a 300-character name": (lambda s: [
        _file("model.yaml", s.info_bytes(manifest={
            **s.info["manifest"], LONG_NAME: {"size": 5, "sha256": hashlib.sha256(b"owned")
                                              .hexdigest()}})),
        *s.members()[1:], _file(LONG_NAME, b"owned")], "longer than the 255 bytes"),
    "manifest lists a traversal": (lambda s: [
        _file("model.yaml", s.info_bytes(manifest={
            **s.info["manifest"], "../x": {"size": 5, "sha256": hashlib.sha256(b"owned")
                                           .hexdigest()}})),
        *s.members()[1:], _file("../x", b"owned")], r"manifest lists '\.\./x'.*climbs out"),
}


@pytest.mark.parametrize("compression", ["none", "zstd"])
@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_archive_is_refused_and_store_unchanged(
    case: str, compression: str, source: Source, refuse: Callable[..., str]
) -> None:
    build, message = HOSTILE[case]
    models.delete("victim:v1")  # so that every check runs, not just "already exists"
    picklable_model.save_model("bystander", 1)
    assert re.search(message, refuse(_tar(build(source), compression)))
    assert models.list("victim") == []


INVALID_INFO: dict[str, tuple[Callable[[Source], bytes], str]] = {
    "not yaml": (lambda s: b"name: [unclosed\n  - {", "model.yaml cannot be read"),
    "a list": (lambda s: b"- 1\n- 2\n", "model.yaml cannot be read"),
    "python tag": (lambda s: b"name: !!python/object/apply:os.system ['true']\n",
                   "model.yaml cannot be read"),
    "no name": (lambda s: s.info_bytes(name=None), "no valid name and version"),
    "bad name": (lambda s: s.info_bytes(name="../evil"), "no valid name and version"),
    "bad version": (lambda s: s.info_bytes(version="V1 "), "no valid name and version"),
    "no manifest": (lambda s: s.info_bytes(manifest=None), "has no manifest"),
    "manifest a list": (lambda s: s.info_bytes(manifest=["saved_model.pkl"]),
                        "has no manifest mapping file names"),
    "manifest entry not a mapping": (
        lambda s: s.info_bytes(manifest={name: 7 for name in s.info["manifest"]}),
        "manifest entry of 'custom_objects.pkl' must be {size: bytes, sha256: 64 hex digits}"),
    "manifest size not a number": (
        lambda s: s.info_bytes(manifest={name: {"size": "big", "sha256": e["sha256"]}
                                         for name, e in s.info["manifest"].items()}),
        "manifest entry of 'custom_objects.pkl' must be"),
    "manifest negative size": (
        lambda s: s.info_bytes(manifest={name: {"size": -1, "sha256": e["sha256"]}
                                         for name, e in s.info["manifest"].items()}),
        "manifest entry of 'custom_objects.pkl' must be"),
    "manifest sha256 not hex": (
        lambda s: s.info_bytes(manifest={name: {"size": e["size"], "sha256": "x" * 64}
                                         for name, e in s.info["manifest"].items()}),
        "manifest entry of 'custom_objects.pkl' must be"),
    "manifest key not text": (
        lambda s: s.info_bytes(manifest={**s.info["manifest"], 5: {"size": 1, "sha256": "0"}}),
        "the manifest lists 5"),
    "manifest lists model.yaml": (
        lambda s: s.info_bytes(manifest={**s.info["manifest"], "model.yaml": {
            "size": 1, "sha256": "0" * 64}}), "the manifest lists 'model.yaml'"),
    "manifest key not normalised": (
        lambda s: s.info_bytes(manifest={"./" + k: v for k, v in s.info["manifest"].items()}),
        "not a normalised relative path"),
    "bad creation time": (lambda s: s.info_bytes(creation_time="yesterday"), "is not valid"),
    "creation time in 2999": (lambda s: s.info_bytes(creation_time="2999-01-01T00:00:00+00:00"),
                              "creation time 2999-01-01T00:00:00+00:00 is in the future"),
    "version 'latest'": (lambda s: s.info_bytes(version="latest"),
                         "its version 'latest' is a reserved word"),
    "yaml alias": (lambda s: s.info_bytes(metadata={"a": "X"}).replace(
        b"a: X", b"a: &x [1, 2]\n  b: *x"), "uses a YAML anchor or alias (line"),
    "yaml anchor alone": (lambda s: s.info_bytes(metadata={"a": "X"}).replace(
        b"a: X", b"a: &x [1, 2]"), "uses a YAML anchor or alias"),
    "billion laughs": (lambda s: s.info_bytes(metadata={"a": "X"}).replace(b"a: X", LAUGHS),
                       "uses a YAML anchor or alias"),
    "bad signature": (lambda s: s.info_bytes(signatures={"predict": {"batchable": "yes"}}),
                      "is not valid"),
}


def test_a_creation_time_within_clock_skew_imports(source: Source, tmp_path: Path) -> None:
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    path = tmp_path / "soon.dosirakmodel"
    path.write_bytes(_tar([_file("model.yaml", source.info_bytes(
        creation_time=soon.isoformat())), *source.members()[1:]]))
    assert models.import_model(str(path), overwrite=True).info.creation_time == soon


@pytest.mark.parametrize("case", list(INVALID_INFO))
def test_invalid_model_yaml_is_refused(case: str, source: Source,
                                       refuse: Callable[..., str]) -> None:
    build, message = INVALID_INFO[case]
    models.delete("victim:v1")
    picklable_model.save_model("bystander", 1)
    assert message in refuse(_tar([_file("model.yaml", build(source)), *source.members()[1:]]))


def _offsets(members: list[Member]) -> list[int]:
    """Cut points inside each header and each file's data of the uncompressed tar."""
    raw = _tar(members)
    cuts = []
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r") as archive:
        for member in archive.getmembers():
            cuts += [member.offset + 100, member.offset_data + 1,
                     member.offset_data + member.size // 2, member.offset_data + member.size - 1]
    return sorted(c for c in cuts if c < len(raw))


def test_truncated_archives_are_refused(source: Source, refuse: Callable[..., str]) -> None:
    models.delete("victim:v1")
    raw = _tar(source.members())
    cuts = _offsets(source.members())
    assert len(cuts) >= 10
    for cut in [0, 1, 511, *cuts]:
        message = refuse(raw[:cut])
        assert "truncated" in message or "not a readable" in message \
            or "does not start with model.yaml" in message, (cut, message)
    packed = _tar(source.members(), "zstd")
    for fraction in (0.01, 0.25, 0.5, 0.75, 0.99):
        message = refuse(packed[: int(len(packed) * fraction)])
        assert "truncated" in message or "not a readable" in message, (fraction, message)


@pytest.mark.parametrize("garbage", [
    b"", b"hello world\n" * 100, os.urandom(5000), b"\x28\xb5\x2f\xfd" + os.urandom(5000),
    b"\x1f\x8b" + os.urandom(5000), b"\x00" * 10240,
])
def test_garbage_is_refused(garbage: bytes, source: Source, refuse: Callable[..., str]) -> None:
    message = refuse(garbage)
    assert "not a readable" in message or "does not start with model.yaml" in message


def test_a_directory_or_missing_path_is_refused(tmp_path: Path) -> None:
    from dosirak.exceptions import InvalidArgument

    with pytest.raises(InvalidArgument, match="is not a file"):
        models.import_model(str(tmp_path))
    with pytest.raises(InvalidArgument, match="is not a file"):
        models.import_model(str(tmp_path / "nope.dosirakmodel"))


def test_import_refuses_an_existing_tag_unless_overwrite(
    source: Source, tmp_path: Path, refuse: Callable[..., str]
) -> None:
    exported = models.export_model("victim:v1", str(tmp_path / "v1.dosirakmodel"))
    message = refuse(Path(exported).read_bytes(), error=AlreadyExists)
    assert "victim:v1" in message and "overwrite=True" in message
    assert models.import_model(exported, overwrite=True).tag == source.model.tag
    models.get("victim:v1", verify=True)


def test_a_damaged_gzip_archive_is_refused(source: Source, refuse: Callable[..., str]) -> None:
    models.delete("victim:v1")
    packed = bytearray(_tar(source.members(), "gzip"))
    packed[-6] ^= 0xFF  # the CRC32 of the gzip trailer
    message = refuse(bytes(packed))
    assert "CRC check failed" in message
    assert "truncated or corrupt" in message or "not a readable" in message


def _replacement(source: Source, payload: bytes) -> bytes:
    """An archive of the same tag holding other files."""
    data = picklable_model.cloudpickle.dumps(payload, protocol=5)
    manifest = {"saved_model.pkl": {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}}
    info = source.info_bytes(manifest=manifest, size=len(data))
    return _tar([_file("model.yaml", info), _file("saved_model.pkl", data)])


def test_overwrite_replaces_the_version(source: Source, tmp_path: Path) -> None:
    path = tmp_path / "new.dosirakmodel"
    path.write_bytes(_replacement(source, b"new"))
    model = models.import_model(str(path), overwrite=True)
    assert model.tag == source.model.tag
    assert picklable_model.load_model("victim:v1") == b"new"
    assert set(model.info.manifest) == {"saved_model.pkl"}
    assert sorted(os.listdir(model.path)) == ["model.yaml", "saved_model.pkl"]
    models.get("victim:v1", verify=True)
    store = Path(os.environ["DOSIRAK_HOME"]) / "models"
    assert os.listdir(store / ".tmp") == [] and os.listdir(store / "victim") == ["v1"]


def test_overwrite_is_atomic_for_readers(source: Source, tmp_path: Path) -> None:
    """Readers loading the tag while it is replaced over and over see old or new, whole."""
    archives = []
    for index in range(2):
        path = tmp_path / f"{index}.dosirakmodel"
        path.write_bytes(_replacement(source, bytes([index]) * 200_000))
        archives.append(str(path))
    errors: list[BaseException] = []
    seen: set[bytes] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                model = models.get("victim:v1", verify=True)
                seen.add(picklable_model.load_model(model)[:1])
            except BaseException as error:  # any failure is a torn read
                errors.append(error)
                return

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        for round_ in range(40):
            models.import_model(archives[round_ % 2], overwrite=True)
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert errors == []
    assert seen <= {b"\x00", b"\x01", PAYLOAD[:1]} and len(seen) >= 2


# ----- zstd streams of several frames --------------------------------------------------------

SKIPPABLE_FRAME = b"\x50\x2a\x4d\x18" + (6).to_bytes(4, "little") + b"pzstd!"  # as pzstd writes


def _frames(raw: bytes, cuts: list[int], *, between: bytes = b"") -> bytes:
    """``raw`` compressed as one zstd frame per piece between ``cuts``, ``between`` in between."""
    compressor = zstandard.ZstdCompressor(level=1)
    bounds = [0, *cuts, len(raw)]
    return between.join(compressor.compress(raw[a:b]) for a, b in itertools.pairwise(bounds))


def _flushed_frames(raw: bytes, cuts: list[int]) -> bytes:
    """``raw`` through one stream writer that ends a frame at every cut (FLUSH_FRAME)."""
    buffer = io.BytesIO()
    with zstandard.ZstdCompressor(level=3).stream_writer(buffer, closefd=False) as writer:
        for a, b in itertools.pairwise([0, *cuts, len(raw)]):
            writer.write(raw[a:b])
            writer.flush(zstandard.FLUSH_FRAME)
    return buffer.getvalue()


def _multi_frame(source: Source, how: str) -> tuple[bytes, bytes]:
    """The plain tar of ``source`` and a zstd archive of it in several frames, built ``how``."""
    raw = _tar(source.members())
    # Frame ends inside model.yaml's header, inside the payload's data and in the end blocks.
    cuts = sorted({*_offsets(source.members())[::3], len(raw) - 700})
    packed = {
        "concatenated": lambda: _frames(raw, cuts),
        "flushed": lambda: _flushed_frames(raw, cuts),
        "skippable frames between": lambda: _frames(raw, cuts, between=SKIPPABLE_FRAME),
    }[how]()
    # Not one frame in disguise: a reader that stops after one frame gets only a piece.
    first = zstandard.ZstdDecompressor().decompressobj().decompress(packed)
    assert 0 < len(first) < len(raw)
    return raw, packed


def _imported_files(archive: Path, home: Path, monkeypatch: pytest.MonkeyPatch
                    ) -> dict[str, bytes | None]:
    monkeypatch.setenv("DOSIRAK_HOME", str(home))
    model = models.import_model(str(archive))
    model.verify()
    return _tree(model.path)


@pytest.mark.parametrize("how", ["concatenated", "flushed", "skippable frames between"])
def test_a_multi_frame_zstd_archive_imports_like_a_single_frame_one(
    how: str, source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, packed = _multi_frame(source, how)
    single, several = tmp_path / "single.dosirakmodel", tmp_path / "several.dosirakmodel"
    single.write_bytes(zstandard.ZstdCompressor(level=1).compress(raw))
    several.write_bytes(packed)
    expected = _imported_files(single, tmp_path / "home-single", monkeypatch)
    assert _imported_files(several, tmp_path / "home-several", monkeypatch) == expected
    assert set(expected) == {".", "model.yaml", *source.files}
    assert picklable_model.load_model(source.model.tag) == PAYLOAD


@pytest.mark.parametrize("garbage", [b"trailing garbage\n", os.urandom(3000), b"\x00" * 64,
                                     b"\x28\xb5\x2f\xfd" + b"\xff" * 40])
def test_bytes_after_the_last_zstd_frame_are_refused(
    garbage: bytes, source: Source, refuse: Callable[..., str]
) -> None:
    models.delete("victim:v1")
    picklable_model.save_model("bystander", 1)
    _, packed = _multi_frame(source, "concatenated")
    message = refuse(packed + garbage)
    assert "is truncated or corrupt after its last file" in message, message
    assert "followed by bytes that are not part of it" in message
    assert models.list("victim") == []
