"""Archives laid out before they are written, so that any byte range of them can be produced.

A push sends a model's (or bento's) archive in chunks, and a pull receives one with HTTP ranges;
either may stop half-way and resume at the byte where it stopped. Both sides therefore describe
the archive as a list of parts (header bytes, file contents, padding) whose sizes are known from
the manifest, and read any range of it without writing the whole. The bytes are exactly those of
``store.archive.write_tar`` (plain tar, PAX headers from ``tar_stream.header``), so what arrives
is read by the same ``unpack`` checks as ``dosirak models import``.

    parts = archive_parts("model.yaml", info_bytes, manifest, source=lambda name, entry: ...)
    size = total_size(parts)
    for piece in read_range(parts, opener, start=1 << 20):
        ...
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from dosirak.store.tar_stream import header

PIECE = 1 << 20  # bytes read from a file at a time


@dataclass(frozen=True)
class Part:
    """``size`` bytes: ``data`` itself, or the content of ``source`` (a path or a blob key)."""

    size: int
    data: bytes | None = None
    source: str | None = None


class _Builder:
    """Parts appended in order, with the running offset that tar padding depends on."""

    def __init__(self) -> None:
        self.parts: list[Part] = []
        self.offset = 0

    def add(self, *parts: Part) -> None:
        for part in parts:
            self.parts.append(part)
            self.offset += part.size

    def header(self, name: str, size: int) -> None:
        head = header(name, size)
        self.add(Part(len(head), data=head))

    def pad(self, unit: int) -> None:
        if remainder := self.offset % unit:
            self.add(Part(unit - remainder, data=bytes(unit - remainder)))

    def close(self) -> list[Part]:
        """End as tarfile does: two zero blocks, then zeros to a whole record."""
        self.add(Part(2 * tarfile.BLOCKSIZE, data=bytes(2 * tarfile.BLOCKSIZE)))
        self.pad(tarfile.RECORDSIZE)
        return self.parts


def archive_parts(info_name: str, info_bytes: bytes, manifest: dict[str, dict[str, Any]],
                  source: Callable[[str, dict[str, Any]], str]) -> list[Part]:
    """The parts of the plain tar ``write_tar`` writes: ``info_name`` first, then every file
    of ``manifest`` in its order, read from ``source(name, entry)``."""
    tar = _Builder()
    tar.header(info_name, len(info_bytes))
    tar.add(Part(len(info_bytes), data=info_bytes))
    tar.pad(tarfile.BLOCKSIZE)
    for name, entry in manifest.items():
        tar.header(name, entry["size"])
        if entry["size"]:
            tar.add(Part(entry["size"], source=source(name, entry)))
        tar.pad(tarfile.BLOCKSIZE)
    return tar.close()


def nested_parts(members: list[tuple[str, list[Part]]]) -> list[Part]:
    """A plain tar whose members are the archives ``members`` (name, parts), nested whole, as
    ``bentos/archive.py`` writes a ``.bento``."""
    tar = _Builder()
    for name, inner in members:
        tar.header(name, total_size(inner))
        tar.add(*inner)
        tar.pad(tarfile.BLOCKSIZE)
    return tar.close()


def chunks_digest(digests: list[str]) -> str:
    """What a push's ``complete`` declares for the whole archive: the sha256 of its chunks'
    sha256 digests (32 bytes each, in order). Each chunk is checked against its own digest when
    it arrives, so this covers every byte without a second pass over them on either side."""
    return hashlib.sha256(b"".join(bytes.fromhex(digest) for digest in digests)).hexdigest()


def total_size(parts: list[Part]) -> int:
    return sum(part.size for part in parts)


def read_range(parts: list[Part], opener: Callable[[str], IO[bytes]], start: int = 0,
               end: int | None = None, piece: int = PIECE) -> Iterator[bytes]:
    """The bytes ``[start, end)`` of the archive, in pieces of at most ``piece`` bytes.

    A source shorter than its part (a file changed or a blob cut) raises OSError rather than
    yielding a shifted archive.
    """
    for part, skip, length in _spans(parts, start, total_size(parts) if end is None else end):
        if part.data is not None:
            yield part.data[skip:skip + length]
            continue
        with _open_at(opener, part, skip) as stream:
            while length:
                data = stream.read(min(piece, length))
                if not data:
                    raise _cut(part, length)
                length -= len(data)
                yield data


def read_into(parts: list[Part], opener: Callable[[str], IO[bytes]], start: int,
              buffer: memoryview) -> None:
    """Fill ``buffer`` with the archive's bytes from ``start`` on (``readinto``: no copies
    beyond the buffer itself, whatever its size). OSError for a source cut short."""
    filled = 0
    for part, skip, length in _spans(parts, start, start + len(buffer)):
        if part.data is not None:
            buffer[filled:filled + length] = part.data[skip:skip + length]
            filled += length
            continue
        with _open_at(opener, part, skip) as stream:
            while length:
                count = stream.readinto(buffer[filled:filled + length])  # type: ignore[attr-defined]
                if not count:
                    raise _cut(part, length)
                filled += count
                length -= count
    if filled != len(buffer):
        raise ValueError(f"the archive ends before byte {start + len(buffer)}")


def _spans(parts: list[Part], start: int, end: int) -> Iterator[tuple[Part, int, int]]:
    """(part, offset in it, length) of each part overlapping ``[start, end)``, in order."""
    offset = 0
    for part in parts:
        low, high = max(start, offset), min(end, offset + part.size)
        offset += part.size
        if low >= high:
            if offset >= end:
                return
            continue
        yield part, low - (offset - part.size), high - low


@contextmanager
def _open_at(opener: Callable[[str], IO[bytes]], part: Part, skip: int) -> Iterator[IO[bytes]]:
    assert part.source is not None
    with opener(part.source) as stream:
        if skip:
            stream.seek(skip)
        yield stream


def _cut(part: Part, left: int) -> OSError:
    return OSError(f"{part.source} ended {left} bytes early; it was changed or cut after it was "
                   "stored")
