"""Error answers become typed exceptions carrying the server's message, detail and status."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

import dosirak
from dosirak.client import AsyncHTTPClient, Body, SyncHTTPClient
from dosirak.client.errors import error_from_answer
from dosirak.config import ServingConfig
from dosirak.exceptions import (
    BadInput,
    NotFound,
    PayloadTooLarge,
    RemoteError,
    ServiceOverloaded,
    ServiceUnreachable,
    UnsupportedMediaType,
)
from dosirak.io import JSON, NumpyNdarray
from live_server import serve

LIMIT = 16 * 1024


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    svc = dosirak.Service("failing")

    @svc.api(input=NumpyNdarray(dtype="float32", shape=(-1, 4), enforce_dtype=True,
                                enforce_shape=True), output=NumpyNdarray())
    def classify(x: np.ndarray) -> np.ndarray:
        return x.sum(axis=1)

    @svc.api(input=JSON(), output=JSON())
    def crash(value: Any) -> Any:
        raise RuntimeError("a secret the server keeps to itself")

    @svc.api(input=JSON(), output=JSON())
    def overloaded(value: Any) -> Any:
        raise ServiceOverloaded("the batch queue is full: 3 s of work waiting", retry_after=2.2)

    @svc.api(input=JSON(), output=JSON())
    def slow(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    with serve(svc, max_request_size=LIMIT) as base:
        yield base


def test_400_is_bad_input_with_detail(url: str) -> None:
    with SyncHTTPClient(url) as client, pytest.raises(BadInput) as caught:
        client.classify(np.ones((2, 3), dtype=np.float32))
    error = caught.value
    assert str(error) == "expected shape (any, 4), got (2, 3)"
    assert error.status == 400
    assert error.detail == [{"loc": ["body", "axis 1"], "msg": "has 3 element(s), expected 4",
                             "type": "shape_error"}]


def test_400_for_a_dtype(url: str) -> None:
    with SyncHTTPClient(url) as client, pytest.raises(BadInput, match="expected an array of "
                                                         "float32, got <U1"):
        client.classify(np.array([["a", "b", "c", "d"]]))


def test_404_is_not_found(url: str) -> None:
    # A client pointed below the service's root finds no /docs.json there.
    with pytest.raises(NotFound) as caught:
        SyncHTTPClient(f"{url}/not-here")
    assert caught.value.status == 404
    assert "no route '/not-here/docs.json'" in str(caught.value)


def test_413_is_payload_too_large(url: str) -> None:
    with SyncHTTPClient(url) as client, pytest.raises(PayloadTooLarge) as caught:
        client.classify(np.ones((LIMIT, 4), dtype=np.float32))
    assert caught.value.status == 413
    assert f"at most {LIMIT} bytes" in str(caught.value)
    with SyncHTTPClient(url) as client:  # the server closed that connection; a new one works
        assert client.classify(np.ones((1, 4), dtype=np.float32)).tolist() == [4.0]


def test_415_is_unsupported_media_type(url: str) -> None:
    with SyncHTTPClient(url) as client, pytest.raises(UnsupportedMediaType) as caught:
        client.classify(Body(b"<rows/>", "application/xml"))
    assert caught.value.status == 415
    assert caught.value.accepted == ["application/json", "application/x-npy"]
    assert "does not read application/xml" in str(caught.value)


def test_500_is_remote_error_with_request_id(url: str) -> None:
    with SyncHTTPClient(url, headers={"x-request-id": "trace-42"}) as client, \
            pytest.raises(RemoteError) as caught:
        client.crash({})
    error = caught.value
    assert type(error) is RemoteError
    assert error.status == 500
    assert error.request_id == "trace-42"
    assert str(error).startswith("the API raised an exception")
    assert "request id trace-42" in str(error)
    assert "secret" not in str(error)


def test_503_is_overloaded_with_retry_after(url: str) -> None:
    with SyncHTTPClient(url) as client, pytest.raises(ServiceOverloaded) as caught:
        client.overloaded(None)
    assert str(caught.value) == "the batch queue is full: 3 s of work waiting"
    assert caught.value.status == 503
    assert caught.value.retry_after == 3.0  # the server rounds up to whole seconds


def test_timeouts(url: str) -> None:
    with SyncHTTPClient(url, timeout=0.3) as client, pytest.raises(ServiceUnreachable) as caught:
        client.slow(1.0)
    assert caught.value.status == 504
    assert "no answer within 0.3 s" in str(caught.value)


def test_nobody_listening() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ServiceUnreachable, match="is the service running at"):
        SyncHTTPClient(f"127.0.0.1:{port}")


@pytest.fixture(scope="module")
def limited_url() -> Iterator[str]:
    """A server that runs one API call at a time and stops calls after 0.5 s."""
    svc = dosirak.Service("limited")

    @svc.api(input=JSON(), output=JSON())
    async def wait(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    config = ServingConfig(api_server={"max_concurrency": 1, "timeout": 0.5})
    with serve(svc, config=config) as base:
        yield base


def test_a_server_at_capacity_is_overloaded(limited_url: str) -> None:
    async def main() -> list[Any]:
        async with AsyncHTTPClient(limited_url) as client:
            # Two calls at once: whichever arrives second finds the server at its limit.
            return await asyncio.gather(client.wait(0.3), client.wait(0.3),
                                        return_exceptions=True)

    results = asyncio.run(main())
    assert 0.3 in results
    [refused] = [result for result in results if result != 0.3]
    assert isinstance(refused, ServiceOverloaded)
    assert refused.status == 503
    assert refused.retry_after == 1.0
    assert "at most 1 API calls at once" in str(refused)


def test_504_is_remote_error(limited_url: str) -> None:
    with SyncHTTPClient(limited_url) as client, pytest.raises(RemoteError) as caught:
        client.wait(3.0)
    assert type(caught.value) is RemoteError
    assert caught.value.status == 504
    assert "longer than this server's timeout of 0.5 s" in str(caught.value)


def test_statuses_from_elsewhere() -> None:
    # Answers a proxy in front of the service may give, and headers it may write.
    too_many = error_from_answer(429, b'{"error": "more than 64 requests at once"}',
                                 httpx.Headers({"retry-after": "5"}), "POST /x")
    assert isinstance(too_many, ServiceOverloaded)
    assert (too_many.status, too_many.retry_after) == (429, 5.0)
    assert str(too_many) == "more than 64 requests at once"
    gateway = error_from_answer(504, b"<html>Gateway Timeout</html>", httpx.Headers(),
                                "POST http://h/x")
    assert type(gateway) is RemoteError and gateway.status == 504
    assert str(gateway) == "POST http://h/x answered 504: <html>Gateway Timeout</html>"
    method = error_from_answer(405, b'{"error": "GET is not allowed"}', httpx.Headers(), "")
    assert type(method) is RemoteError and method.status == 405
    unavailable = error_from_answer(503, b"", httpx.Headers({"retry-after": "soon"}), "GET /")
    assert isinstance(unavailable, ServiceOverloaded) and unavailable.retry_after == 1.0


def test_invalid_client_options() -> None:
    with pytest.raises(dosirak.exceptions.InvalidArgument, match="http:// or https://"):
        SyncHTTPClient("ftp://127.0.0.1:3000")
    with pytest.raises(dosirak.exceptions.InvalidArgument, match="positive number"):
        SyncHTTPClient("127.0.0.1:3000", timeout=0)
