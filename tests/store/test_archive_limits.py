"""Archives that would cost far more than their size: tar headers, unpacked bytes, free space.

Every hostile archive here is a few kilobytes of zstd built in the test; unpacked or parsed as
tarfile alone would, it would take hundreds of megabytes of memory or of disk.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import shutil
import tarfile
import tracemalloc
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
import yaml
import zstandard

from dosirak import models, picklable_model
from dosirak.exceptions import UnsafeArchive
from dosirak.store.unpack import HEADER_LIMIT

BOMB = 64 << 20  # what one hostile header or file would take if it were read


def _tree(root: Path) -> dict[str, int]:
    """Every file under root with its size."""
    return {str(Path(d, f).relative_to(root)): Path(d, f).stat().st_size
            for d, _dirs, files in os.walk(root) for f in files}


def _member_chunks(raw: bytes) -> list[bytes]:
    """A plain tar's members as byte strings (header, data and padding each), end blocks last."""
    with tarfile.open(fileobj=io.BytesIO(raw)) as archive:
        starts = [member.offset for member in archive.getmembers()]
        end = archive.offset
    bounds = [*starts, end]
    return [raw[a:b] for a, b in itertools.pairwise(bounds)] + [raw[end:]]


def _header(name: str, kind: bytes, size: int) -> bytes:
    member = tarfile.TarInfo(name)
    member.type, member.size = kind, size
    return member.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")


def _padding(size: int) -> bytes:
    return bytes(-size % tarfile.BLOCKSIZE)


def _pax_record(size: int) -> Iterable[bytes]:
    """One PAX ``comment`` record of exactly ``size`` bytes, in 1 MiB pieces."""
    prefix = f"{size} comment=".encode()
    left = size - len(prefix) - 1
    yield prefix
    while left:
        piece = min(left, 1 << 20)
        yield b"a" * piece
        left -= piece
    yield b"\n"


def _zstd(pieces: Iterable[bytes]) -> bytes:
    """Compress a stream piece by piece, never holding it whole."""
    compressor = zstandard.ZstdCompressor(level=3).compressobj()
    out = [compressor.compress(piece) for piece in pieces]
    return b"".join([*out, compressor.flush()])


@pytest.fixture
def chunks(tmp_path: Path) -> list[bytes]:
    """A real model's plain archive as member chunks: model.yaml, its files, the end blocks."""
    picklable_model.save_model("victim:v1", os.urandom(1000), custom_objects={"k": 1})
    raw = Path(models.export_model("victim:v1", str(tmp_path / "good.dosirakmodel"))).read_bytes()
    models.delete("victim:v1")
    return _member_chunks(raw)


@pytest.fixture
def refused(tmp_path: Path, dosirak_home: Path) -> Callable[..., str]:
    """Import an archive; it must be refused with UnsafeArchive, the store left as it was and
    at most ``peak`` bytes of Python memory taken on the way."""

    def check(data: bytes, *, peak: int = 16 << 20, **options: object) -> str:
        path = tmp_path / f"hostile-{hashlib.sha256(data).hexdigest()[:12]}.dosirakmodel"
        path.write_bytes(data)
        before = _tree(dosirak_home)
        tracemalloc.start()
        try:
            with pytest.raises(UnsafeArchive) as raised:
                models.import_model(str(path), **options)  # type: ignore[arg-type]
            taken = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert taken < peak, f"the refusal took {taken >> 20} MiB of memory"
        assert _tree(dosirak_home) == before
        return str(raised.value)

    return check


def test_a_huge_pax_header_is_refused_before_it_is_read(
    chunks: list[bytes], refused: Callable[..., str]
) -> None:
    # On the second member, so the archive is otherwise whole: it used to import.
    hostile = _zstd([chunks[0], _header("././@PaxHeader", tarfile.XHDTYPE, BOMB),
                     *_pax_record(BOMB), _padding(BOMB), *chunks[1:]])
    assert len(hostile) < 64 << 10
    message = refused(hostile)
    assert f"over the limit of {HEADER_LIMIT} bytes" in message
    assert "PAX extended header" in message and "refused" in message


@pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK])
def test_a_huge_gnu_long_name_is_refused_before_it_is_read(
    kind: bytes, chunks: list[bytes], refused: Callable[..., str]
) -> None:
    name = (b"a" * (1 << 20) for _ in range(BOMB >> 20))
    hostile = _zstd([_header("././@LongLink", kind, BOMB), *name, *chunks])
    assert "GNU long name" in refused(hostile)


def test_a_chain_of_pax_headers_is_refused(chunks: list[bytes],
                                           refused: Callable[..., str]) -> None:
    # tarfile reads each next header from inside the last: 2000 of them overflowed its stack.
    empty_pax = _header("././@PaxHeader", tarfile.XHDTYPE, 0)
    assert "over the limit" in refused(_zstd([chunks[0], empty_pax * 2000, *chunks[1:]]))


def test_a_global_pax_header_is_refused(chunks: list[bytes],
                                        refused: Callable[..., str]) -> None:
    # Its records would stay for every later member, piling up member after member.
    record = b"".join(_pax_record(100))
    hostile = _zstd([_header("pax_global_header", tarfile.XGLTYPE, len(record)), record,
                     _padding(len(record)), *chunks])
    assert "global PAX header" in refused(hostile)


def _with_zeros(chunks: list[bytes], size: int) -> bytes:
    """The archive with one more file of ``size`` zero bytes, listed in its manifest."""
    info_member = tarfile.TarInfo.frombuf(chunks[0][:512], "utf-8", "surrogateescape")
    info = yaml.safe_load(chunks[0][512:512 + info_member.size])
    digest = hashlib.sha256()
    for _ in range(size >> 20):
        digest.update(bytes(1 << 20))
    info["manifest"]["zeros.bin"] = {"size": size, "sha256": digest.hexdigest()}
    info_bytes = yaml.safe_dump(info, sort_keys=False).encode()
    zeros = (bytes(1 << 20) for _ in range(size >> 20))
    return _zstd([_header("model.yaml", tarfile.REGTYPE, len(info_bytes)), info_bytes,
                  _padding(len(info_bytes)), *chunks[1:-1],
                  _header("zeros.bin", tarfile.REGTYPE, size), *zeros, *chunks[-1:]])


def test_an_archive_over_the_size_limit_is_refused_before_writing(
    chunks: list[bytes], refused: Callable[..., str], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path
) -> None:
    hostile = _with_zeros(chunks, BOMB)
    assert len(hostile) < 64 << 10  # a 50 KB archive once unpacked 1.5 GiB into the store
    message = refused(hostile, max_size=BOMB // 2)
    assert "unpacks to 64.0 MiB, over the import limit of 32.0 MiB" in message
    assert "model_store.import_max_size" in message
    monkeypatch.setenv("DOSIRAK_CONFIG_OPTIONS", "model_store.import_max_size=1MiB")
    assert "over the import limit of 1.0 MiB" in refused(hostile)
    monkeypatch.delenv("DOSIRAK_CONFIG_OPTIONS")
    fits = tmp_path / "fits.dosirakmodel"
    fits.write_bytes(hostile)
    imported = models.import_model(str(fits))  # under the default limit
    assert (imported.path / "zeros.bin").stat().st_size == BOMB


def test_an_archive_larger_than_the_free_space_is_refused_before_writing(
    chunks: list[bytes], refused: Callable[..., str], dosirak_home: Path
) -> None:
    (dosirak_home / "models").mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(dosirak_home / "models").free
    info_member = tarfile.TarInfo.frombuf(chunks[0][:512], "utf-8", "surrogateescape")
    info = yaml.safe_load(chunks[0][512:512 + info_member.size])
    info["manifest"]["huge.bin"] = {"size": free + (1 << 30), "sha256": "0" * 64}
    info_bytes = yaml.safe_dump(info, sort_keys=False).encode()
    hostile = _zstd([_header("model.yaml", tarfile.REGTYPE, len(info_bytes)), info_bytes,
                     _padding(len(info_bytes)), *chunks[1:]])
    message = refused(hostile, max_size=1 << 60)
    assert "but the store's disk has" in message and "free" in message
