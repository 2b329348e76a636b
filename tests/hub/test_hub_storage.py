"""The local storage's reader: exact bytes from any offset, past the page cache where it can."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dosirak.hub.storage import Storage
from file_systems import takes_o_direct


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, (1 << 20) + 123, 9 << 20])
def test_an_object_reads_back_exactly_from_any_offset(tmp_path: Path, size: int) -> None:
    storage = Storage(str(tmp_path / "objects"))
    data = os.urandom(size)
    writer = storage.writer("blobs/x")
    writer.write(data)
    writer.commit()
    with storage.open("blobs/x") as stream:
        pieces = []
        while piece := stream.read(1 << 20):
            pieces.append(piece)
        assert b"".join(pieces) == data
        for start in (0, 1, 4096, 5000):
            if start > size:
                continue
            assert stream.seek(start) == start
            assert stream.read() == data[start:]
            stream.seek(start)
            buffer, filled = bytearray(size), 0
            while count := stream.readinto(memoryview(buffer)[filled:]):
                filled += count
            assert bytes(buffer[:filled]) == data[start:]
        # Whole pages from an aligned offset come past the page cache where the file system
        # takes O_DIRECT (this one does unless it is tmpfs-like).
        direct = getattr(stream, "_direct", None)
        if takes_o_direct(tmp_path):
            assert direct is not None
