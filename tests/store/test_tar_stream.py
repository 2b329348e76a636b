"""The tar stream writer and reader under archives: format, copies, hashing, failures."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from dosirak.exceptions import StoreCorrupted
from dosirak.store import tar_stream
from dosirak.store.tar_stream import BackgroundWriter, ForwardReader, TarWriter, copy_hashed
from file_systems import takes_o_direct

BIG = 2 * tar_stream.CHUNK + 12345  # several chunks and a ragged end


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "src"
    (root / "sub").mkdir(parents=True)
    contents = {
        "weights.bin": os.urandom(BIG),
        "sub/config.json": b'{"a": 1}',
        "empty": b"",
        "sub/exact.bin": os.urandom(tar_stream.CHUNK),  # ends on a block boundary
    }
    for name, data in contents.items():
        (root / name).write_bytes(data)
    return {name: root / name for name in contents}


def _write(files: dict[str, Path], sink: io.BufferedIOBase | None, fd: int | None,
           progress: list[int]) -> None:
    writer = TarWriter(sink, fd=fd, progress=progress.append)  # type: ignore[arg-type]
    writer.add_bytes("model.yaml", b"name: x\n")
    for name, path in files.items():
        writer.add_file(name, path, path.stat().st_size)
    writer.close()


def _tarfile_bytes(files: dict[str, Path]) -> bytes:
    """What tarfile itself writes for the same members."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        entries = [("model.yaml", b"name: x\n")]
        entries += [(name, path.read_bytes()) for name, path in files.items()]
        for name, data in entries:
            member = tarfile.TarInfo(name)
            member.size, member.mode, member.mtime = len(data), 0o644, 0
            archive.addfile(member, io.BytesIO(data))
    return out.getvalue()


def test_the_writer_produces_what_tarfile_writes(files: dict[str, Path]) -> None:
    sink = io.BytesIO()
    progress: list[int] = []
    _write(files, sink, None, progress)
    assert sink.getvalue() == _tarfile_bytes(files)
    assert sum(progress) == len(sink.getvalue())


def test_the_kernel_copy_writes_the_same_bytes(files: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "direct.tar"
    progress: list[int] = []
    with open(target, "wb", buffering=0) as raw:
        _write(files, raw, raw.fileno(), progress)  # type: ignore[arg-type]
    assert target.read_bytes() == _tarfile_bytes(files)
    assert sum(progress) == target.stat().st_size


def test_gnu_tar_reads_the_archive(files: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "a.tar"
    with open(target, "wb", buffering=0) as raw:
        _write(files, raw, raw.fileno(), [])  # type: ignore[arg-type]
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "-xf", str(target), "-C", str(out)], check=True)
    for name, path in files.items():
        assert (out / name).read_bytes() == path.read_bytes()


def test_a_file_that_changed_size_is_refused(files: dict[str, Path]) -> None:
    writer = TarWriter(io.BytesIO())
    path = files["weights.bin"]
    with pytest.raises(StoreCorrupted, match="manifest says"):
        writer.add_file("weights.bin", path, path.stat().st_size + 1)


def test_the_reader_counts_and_only_goes_forward() -> None:
    reader = ForwardReader(io.BufferedReader(io.BytesIO(bytes(range(256)) * 100)))
    assert reader.read(10) == bytes(range(10))
    assert reader.tell() == 10
    assert reader.seek(300) == 300
    assert reader.read(2) == bytes([300 % 256, 301 % 256])
    with pytest.raises(tarfile.ReadError, match="cannot rewind"):
        reader.seek(0)
    reader.drain()
    assert reader.tell() == 25600
    assert reader.read(5) == b""


def test_tarfile_reads_headers_through_the_reader(files: dict[str, Path]) -> None:
    sink = io.BytesIO()
    _write(files, sink, None, [])
    reader = ForwardReader(io.BufferedReader(io.BytesIO(sink.getvalue())))
    with tarfile.open(fileobj=reader, mode="r:") as archive:  # type: ignore[call-overload]
        names = []
        for member in archive:
            names.append(member.name)
            assert reader.tell() == member.offset_data
            if member.name in files:  # read some members, skip the others
                data = reader.read(member.size)
                assert data == files[member.name].read_bytes()
    assert names == ["model.yaml", *files]


@pytest.mark.parametrize("size", [0, 100, tar_stream.CHUNK, BIG])
def test_copy_hashed_copies_and_hashes(tmp_path: Path, size: int) -> None:
    data = os.urandom(size) + b"trailing bytes of the next member"
    reader = ForwardReader(io.BufferedReader(io.BytesIO(data)))
    progress: list[int] = []
    digest = copy_hashed(reader, size, tmp_path / "out", progress.append)
    assert digest == hashlib.sha256(data[:size]).hexdigest()
    assert (tmp_path / "out").read_bytes() == data[:size]
    assert reader.tell() == size
    assert sum(progress) == size


@pytest.mark.parametrize("size", [3 * tar_stream.CHUNK, 3 * tar_stream.CHUNK + 4095])
def test_a_big_file_goes_past_the_page_cache_but_its_tail(tmp_path: Path, size: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[tuple[int, bool]] = []
    original = tar_stream._Output.write

    def watched(self: tar_stream._Output, chunk: memoryview) -> None:
        original(self, chunk)
        writes.append((len(chunk), self.direct))  # how it was written

    monkeypatch.setattr(tar_stream._Output, "write", watched)
    data = os.urandom(size)
    reader = ForwardReader(io.BufferedReader(io.BytesIO(data)))
    assert copy_hashed(reader, size, tmp_path / "out") == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "out").read_bytes() == data
    if takes_o_direct(tmp_path):
        whole = [count for count, direct in writes if count % 4096 == 0]
        assert all(direct for count, direct in writes if count % 4096 == 0) and whole
    ragged = [direct for count, direct in writes if count % 4096]
    assert ragged == ([False] if size % 4096 else [])


@pytest.mark.parametrize("size", [100, tar_stream.CHUNK + 1, BIG])
def test_copy_hashed_from_a_plain_file_copies_in_the_kernel(tmp_path: Path, size: int) -> None:
    """From a regular file the data of a big member is copied by the kernel and hashed from
    the written file; the reader ends where the member does, its next bytes still readable."""
    data = os.urandom(size + 700)
    (tmp_path / "archive").write_bytes(data)
    with open(tmp_path / "archive", "rb") as stream:
        reader = ForwardReader(stream)
        reader.seek(300)
        assert reader.kernel_source(size) == (stream.fileno(), 300)
        digest = copy_hashed(reader, size, tmp_path / "out")
        assert reader.tell() == 300 + size
        assert reader.read(400) == data[300 + size:]
    assert digest == hashlib.sha256(data[300:300 + size]).hexdigest()
    assert (tmp_path / "out").read_bytes() == data[300:300 + size]


def test_copy_hashed_from_a_short_plain_file(tmp_path: Path) -> None:
    (tmp_path / "archive").write_bytes(os.urandom(BIG - 1))
    with open(tmp_path / "archive", "rb") as stream, pytest.raises(EOFError):
        copy_hashed(ForwardReader(stream), BIG, tmp_path / "out")


@pytest.mark.parametrize("size", [100, BIG])
def test_copy_hashed_reports_a_short_source(tmp_path: Path, size: int) -> None:
    reader = ForwardReader(io.BufferedReader(io.BytesIO(os.urandom(size - 1))))
    with pytest.raises(EOFError):
        copy_hashed(reader, size, tmp_path / "out")


def test_copy_hashed_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "out").write_bytes(b"keep")
    reader = ForwardReader(io.BufferedReader(io.BytesIO(b"new")))
    with pytest.raises(FileExistsError):
        copy_hashed(reader, 3, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == b"keep"


def test_the_background_writer_keeps_order_and_copies(tmp_path: Path) -> None:
    target = tmp_path / "out"
    buffer = bytearray(1000)
    expected = b""
    with open(target, "wb") as raw, BackgroundWriter(raw) as writer:
        for turn in range(50):
            buffer[:] = bytes([turn]) * 1000  # the caller reuses its buffer at once
            writer.write(memoryview(buffer))
            expected += bytes(buffer)
    assert target.read_bytes() == expected


def test_the_background_writer_raises_a_failed_write(tmp_path: Path) -> None:
    with open(tmp_path / "out", "wb") as raw:
        pass  # closed: every write to it fails
    with pytest.raises(ValueError, match="closed file"), BackgroundWriter(raw) as writer:
        for _ in range(100):
            writer.write(b"x" * 100)
        writer.flush()


def test_the_kernel_copy_maps_a_bounded_window(tmp_path: Path) -> None:
    """Hashing the written file through mappings keeps at most two steps mapped: a 96 MiB member
    raises the process's peak RSS by far less than its size (a whole-file mapping would count
    every hashed page)."""
    code = ("import resource, sys; from pathlib import Path\n"
            "from dosirak.store.tar_stream import ForwardReader, copy_hashed\n"
            "source, size = Path(sys.argv[1]), int(sys.argv[2])\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "with open(source, 'rb') as stream:\n"
            "    copy_hashed(ForwardReader(stream), size, source.with_suffix('.out'))\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n")
    size = 96 << 20
    with open(tmp_path / "member", "wb") as out:
        for _ in range(size >> 20):
            out.write(os.urandom(1 << 20))
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "member"), str(size)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    grown_kib = int(done.stdout)
    assert grown_kib < 40 << 10, f"peak RSS grew {grown_kib >> 10} MiB for a 96 MiB member"
