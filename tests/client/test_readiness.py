"""wait_ready: against a server that starts listening late, one whose service starts late, and
one that never becomes ready."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import numpy as np
import pytest
import uvicorn
from sklearn.linear_model import LogisticRegression

from dosirak.client import AsyncHTTPClient, SyncHTTPClient
from dosirak.exceptions import ServiceUnreachable
from dosirak.server.app import create_app
from live_server import serve

from .services import LateStart, iris_service, save_iris
from .test_sync import SAMPLE

DELAY = 0.8


@pytest.fixture
def saved_iris() -> LogisticRegression:
    """``iris_clf`` in this test's own store, for the servers the test starts."""
    return save_iris()


def test_server_that_listens_late(saved_iris: LogisticRegression) -> None:
    # The port is taken but nobody accepts yet: connections are refused until uvicorn starts,
    # as while `dosirak serve` is still importing and loading models.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    with _LaterServer(sock, create_app(iris_service()), DELAY):
        started = time.monotonic()
        with SyncHTTPClient(f"http://127.0.0.1:{port}", wait_ready=True, timeout=20) as client:
            waited = time.monotonic() - started
            assert client.is_ready()
            result = client.classify(SAMPLE)
    assert waited >= DELAY * 0.9
    np.testing.assert_array_equal(result, saved_iris.predict(SAMPLE))


def test_service_that_becomes_ready_late(saved_iris: LogisticRegression) -> None:
    with serve(LateStart(create_app(iris_service()), DELAY)) as url:
        client = SyncHTTPClient(url)  # the schema is there before the runners are
        assert not client.is_ready()
        started = time.monotonic()
        client.wait_ready(timeout=20)
        waited = time.monotonic() - started
        assert client.is_ready()
        np.testing.assert_array_equal(client.classify(SAMPLE), saved_iris.predict(SAMPLE))
        client.close()
    assert 0.3 < waited < DELAY + 2


def test_async_wait_without_blocking_the_loop(saved_iris: LogisticRegression) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    async def main(url: str) -> np.ndarray:
        ticker = asyncio.create_task(tick())
        client = await AsyncHTTPClient.from_url(url, wait_ready=True, timeout=20)
        ticker.cancel()
        async with client:
            assert await client.is_ready()
            return await client.classify(SAMPLE)

    with serve(LateStart(create_app(iris_service()), DELAY)) as url:
        result = asyncio.run(main(url))
    np.testing.assert_array_equal(result, saved_iris.predict(SAMPLE))
    assert ticks >= DELAY / 0.02 / 3  # the loop kept running while the client waited


def test_never_ready_times_out_with_the_server_reason(saved_iris: LogisticRegression) -> None:
    with serve(create_app(iris_service()), lifespan="off") as url:
        started = time.monotonic()
        with pytest.raises(ServiceUnreachable) as caught:
            SyncHTTPClient(url, wait_ready=True, timeout=0.5)
        assert time.monotonic() - started < 2
        message = str(caught.value)
        assert f"the service at {url} was not ready after 0.5 s" in message
        assert "503 not ready: the service is starting" in message

        async def main() -> None:
            await AsyncHTTPClient.from_url(url, wait_ready=True, timeout=0.3)

        with pytest.raises(ServiceUnreachable, match=r"not ready after 0\.3 s"):
            asyncio.run(main())


class _LaterServer:
    """Start uvicorn on ``sock`` after ``delay`` seconds, in a thread; stop it on exit."""

    def __init__(self, sock: socket.socket, app: object, delay: float) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.sock = sock
        self.delay = delay
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        time.sleep(self.delay)
        self.server.run(sockets=[self.sock])

    def __enter__(self) -> _LaterServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        while self.thread.is_alive() and not self.server.started:
            time.sleep(0.01)
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
