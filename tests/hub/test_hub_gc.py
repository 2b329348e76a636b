"""The collector and what a killed hub leaves on its disk."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import httpx

CHUNK = 64 << 10


def _partials(hub) -> list[Path]:
    return sorted((hub.data / "objects").rglob(".*.partial"))


def _send_chunk_slowly(hub, upload: str, data: bytes, go_on: threading.Event,
                       answers: list) -> threading.Thread:
    """PUT chunk 1 of ``upload`` (out of order: stored as an object, not assembled): half of
    ``data``, then the rest once ``go_on`` is set."""

    def body():
        yield data[:len(data) // 2]
        go_on.wait(60)
        yield data[len(data) // 2:]

    def send() -> None:
        try:
            with hub.http() as http:
                answers.append(http.put(
                    f"/api/v1/uploads/{upload}/chunks/1", content=body(),
                    headers={"X-Chunk-Sha256": hashlib.sha256(data).hexdigest(),
                             "Content-Length": str(len(data))}))
        except httpx.HTTPError as error:  # the hub was killed under it
            answers.append(error)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def _begin(http, name: str, size: int) -> str:
    """An upload of two chunks, the second ``size`` bytes long."""
    begun = http.post(f"/api/v1/models/{name}/versions/v1/uploads",
                      json={"digest": "a" * 64, "size": CHUNK + size})
    assert begun.status_code == 201, begun.text
    return begun.json()["upload_id"]


def _wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_gc_removes_partial_files_of_a_killed_hub_after_the_grace(start_hub):
    hub = start_hub("--chunk-size", str(CHUNK))
    data = os.urandom(4000)
    with hub.http() as http:
        upload = _begin(http, "cut", len(data))
    go_on, answers = threading.Event(), []
    sender = _send_chunk_slowly(hub, upload, data, go_on, answers)
    _wait_for(lambda: _partials(hub), "the chunk's partial file")
    hub.kill()  # SIGKILL mid-chunk: its partial file stays behind
    go_on.set()
    sender.join(60)
    [left] = _partials(hub)
    hub = start_hub("--chunk-size", str(CHUNK), data=hub.data)
    with hub.http() as http:
        live = _begin(http, "live", len(data))
        still, live_answers = threading.Event(), []
        live_sender = _send_chunk_slowly(hub, live, data, still, live_answers)
        _wait_for(lambda: len(_partials(hub)) == 2, "the live chunk's partial file")
        in_flight = next(p for p in _partials(hub) if p != left)
        kept = http.post("/api/v1/gc", json={}).json()  # grace 1h: both are recent
        assert kept["partials"] == 0 and len(_partials(hub)) == 2
        hours_ago = time.time() - 2 * 3600
        os.utime(left, (hours_ago, hours_ago))  # the killed write, 2 hours later
        dry = http.post("/api/v1/gc", json={"dry_run": True}).json()
        assert dry["partials"] == 1 and left.exists()
        done = http.post("/api/v1/gc", json={}).json()
        assert done["partials"] == 1 and not left.exists()
        assert in_flight.exists()  # the upload in progress was left alone
        still.set()
        live_sender.join(60)
        assert live_answers[0].status_code == 200, live_answers[0].text
        assert _partials(hub) == []
        gc_events = http.get("/api/v1/events", params={"action": "gc"}).json()["items"]
        assert gc_events[0]["detail"]["partials"] == 1
