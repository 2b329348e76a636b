"""The ceiling for batching over HTTP on uvicorn: raw ASGI, no framework, a batcher that knows
the load.

The harness's synthetic model (5 ms + 0.05 ms per row, pure sleep) behind the least a server can
do: read the body, parse one JSON row with orjson, queue it, and let one batcher task run the
model on everything queued once ``FULL`` rows wait (the benchmark's 64 connections) or the
oldest row has waited ``MAX_WAIT_S``. The model runs in a thread, so the event loop keeps
answering while it sleeps. No request ids, metrics, logs, validation or limits: whatever
dosirak reaches below this is the price of those; what this reaches below the ideal is the
price of HTTP on one event loop between two batches.

    PYTHONPATH=../shared/bench/apps python -m uvicorn benchmarks.apps.batch_limit:app \
        --port 3000 --no-access-log
"""

from __future__ import annotations

import asyncio
import contextlib
import os

import numpy as np
import orjson
from fake_model import fake_predict

FULL = int(os.environ.get("BATCH_LIMIT_FULL", "64"))
MAX_WAIT_S = 0.02
_HEADERS = [(b"content-type", b"application/json")]


class Batcher:
    """Queue rows, run the model on all of them at once, answer each caller."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.waiters: list[asyncio.Future[int]] = []
        self.arrived = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def submit(self, row: np.ndarray) -> int:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self.run())
        future = asyncio.get_running_loop().create_future()
        self.rows.append(row)
        self.waiters.append(future)
        if len(self.rows) >= FULL or len(self.rows) == 1:
            self.arrived.set()
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.arrived.wait()
            self.arrived.clear()
            if len(self.rows) < FULL:  # woken by the first row: hold until full or too old
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.arrived.wait(), MAX_WAIT_S)
                self.arrived.clear()
            rows, waiters = self.rows, self.waiters
            self.rows, self.waiters = [], []
            if not rows:
                continue
            result = await loop.run_in_executor(None, fake_predict, np.concatenate(rows))
            for future, value in zip(waiters, result.tolist(), strict=True):
                future.set_result(value)
            if self.rows:
                self.arrived.set()


_batcher: Batcher | None = None


async def app(scope, receive, send):
    global _batcher
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["method"] != "POST":
        answer = b"ok"
    else:
        if _batcher is None:
            _batcher = Batcher()
        row = np.asarray(orjson.loads(body), dtype=np.float64)
        answer = orjson.dumps([await _batcher.submit(row)])
    await send({"type": "http.response.start", "status": 200,
                "headers": [*_HEADERS, (b"content-length", str(len(answer)).encode())]})
    await send({"type": "http.response.body", "body": answer})
