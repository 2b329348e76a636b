"""A 500 quotes one request id everywhere: its body, its ``x-request-id`` header, its access line.

Over real HTTP (uvicorn on 127.0.0.1, port 0), with the access log read from the
``dosirak.access`` logger that the server writes to.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

import dosirak
from dosirak.io import JSON, NumpyNdarray
from dosirak.observability.access_log import ACCESS_LOGGER
from dosirak.observability.request_id import MAX_LENGTH
from live_server import serve


class AccessLines(logging.Handler):
    """Keeps the access log's records; ``line_for(path, status)`` waits for one to arrive."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[Any] = []
        self._arrived = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._arrived:
            self.records.append(record.msg)
            self._arrived.notify_all()

    def take(self, path: str, timeout: float = 5.0) -> Any:
        """The first line for ``path`` (removed, so the next request's line comes next)."""
        # The line is written once the answer is sent: it may come just after the response.
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for line in self.records:
                    if line.path == path:
                        self.records.remove(line)
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no access line for {path}: {self.records}")
                self._arrived.wait(left)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, AccessLines]]:
    svc = dosirak.Service("request_ids")

    @svc.api(input=JSON(), output=JSON())
    def crash(value: Any) -> Any:
        raise RuntimeError("the model fell over")

    @svc.api(input=NumpyNdarray(dtype="float32", shape=(-1, 2), enforce_dtype=True,
                                enforce_shape=True), output=NumpyNdarray())
    def total(x: np.ndarray) -> np.ndarray:
        return x.sum(axis=1)

    lines = AccessLines()
    logger = logging.getLogger(ACCESS_LOGGER)
    level = logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        with serve(svc) as url:
            yield url, lines
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)


def test_500_without_a_client_id_quotes_the_generated_id_everywhere(
        server: tuple[str, AccessLines]) -> None:
    url, lines = server
    response = httpx.post(f"{url}/crash", json={})
    assert response.status_code == 500
    body_id = response.json()["request_id"]
    assert body_id  # a generated id, not an empty one
    assert response.headers.get_list("x-request-id") == [body_id]
    line = lines.take("/crash")
    assert (line.status, line.request_id) == (500, body_id)


@pytest.mark.parametrize("client_id", [
    "trace-4bf92f35:span-00f067aa/attempt-2",  # ':' and '/': refused by the old narrower rule
    "YWJjZA+/ZGVm==",
    "t" * MAX_LENGTH,
])
def test_500_keeps_a_sane_client_id_everywhere(server: tuple[str, AccessLines],
                                               client_id: str) -> None:
    url, lines = server
    response = httpx.post(f"{url}/crash", json={}, headers={"x-request-id": client_id})
    assert response.status_code == 500
    assert response.json()["request_id"] == client_id
    assert response.headers.get_list("x-request-id") == [client_id]
    line = lines.take("/crash")
    assert (line.status, line.request_id) == (500, client_id)


def test_400_still_answers_with_detail_and_the_same_id(server: tuple[str, AccessLines]) -> None:
    url, lines = server
    response = httpx.post(f"{url}/total", json=[[1.0, 2.0, 3.0]],
                          headers={"x-request-id": "trace:span/400"})
    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"] == ["body", "axis 1"]
    assert response.headers.get_list("x-request-id") == ["trace:span/400"]
    line = lines.take("/total")
    assert (line.status, line.request_id) == (400, "trace:span/400")


def test_500_for_an_unusable_client_id_quotes_one_replacement_everywhere(
        server: tuple[str, AccessLines]) -> None:
    url, lines = server
    response = httpx.post(f"{url}/crash", json={}, headers={"x-request-id": "has space"})
    body_id = response.json()["request_id"]
    assert body_id != "has space"
    assert response.headers.get_list("x-request-id") == [body_id]
    assert lines.take("/crash").request_id == body_id
