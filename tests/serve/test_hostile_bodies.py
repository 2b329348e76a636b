"""Bodies built to cost the server far more than their size, against one ``dosirak serve`` worker.

A 409 KB CSV of 60,000 columns once left the only worker deaf for over a minute, and a PNG of
13000x13000 pixels cost 640 MB to decode. Both must be refused from what they declare, and the
worker must keep answering everyone else meanwhile.
"""

from __future__ import annotations

import struct
import threading
import time
import zlib
from pathlib import Path

import httpx

from conftest import Served

SERVICE = """
import dosirak
from dosirak.io import JSON, Image, PandasDataFrame

svc = dosirak.Service("hostile")


@svc.api(input=PandasDataFrame(), output=JSON())
def columns(df):
    return list(df.columns)[:10]


@svc.api(input=Image(), output=JSON())
def size(image):
    return list(image.size)
"""


def wide_csv(columns: int) -> bytes:
    """Four real columns and ``columns - 4`` junk ones, one row."""
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    names += [f"junk{i}" for i in range(columns - 4)]
    return (",".join(names) + "\n" + ",".join(["1"] * columns) + "\n").encode()


def png_bomb(width: int, height: int) -> bytes:
    """A valid grey-scale PNG of ``width`` x ``height`` black pixels: the rows compress to
    almost nothing, so the file is small and its decoded image is not."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the pixels
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) +
            chunk(b"IEND", b""))


def test_liveness_answers_within_1s_while_hostile_bodies_are_refused(tmp_path: Path) -> None:
    csv = wide_csv(60_000)
    png = png_bomb(13_000, 13_000)
    assert len(csv) < 800_000 and len(png) < 1_000_000
    (tmp_path / "hostile.py").write_text(SERVICE)
    answers: list[tuple[str, int, str]] = []
    with Served([str(tmp_path / "hostile.py") + ":svc", "--workers", "1"],
                cwd=tmp_path) as server:
        def attack(route: str, body: bytes, content_type: str) -> None:
            with httpx.Client(base_url=server.url, timeout=120) as client:
                for _ in range(3):
                    response = client.post(route, content=body,
                                           headers={"content-type": content_type})
                    answers.append((route, response.status_code, response.text))

        attackers = [threading.Thread(target=attack, args=("/columns", csv, "text/csv")),
                     threading.Thread(target=attack, args=("/size", png, "image/png"))]
        for thread in attackers:
            thread.start()
        waits = []
        with httpx.Client(base_url=server.url, timeout=30) as probe:
            while any(thread.is_alive() for thread in attackers):
                started = time.monotonic()
                assert probe.get("/livez").status_code == 200
                waits.append(time.monotonic() - started)
                time.sleep(0.02)
        for thread in attackers:
            thread.join()
    assert waits and max(waits) < 1.0, f"slowest /livez answer: {max(waits):.2f} s"
    assert len(answers) == 6
    for route, status, text in answers:
        assert status in (400, 413), (route, status, text)
    csv_errors = {text for route, _, text in answers if route == "/columns"}
    png_errors = {text for route, _, text in answers if route == "/size"}
    assert all("60000 columns" in text or "60,000" in text for text in csv_errors), csv_errors
    assert all("13000x13000" in text for text in png_errors), png_errors
