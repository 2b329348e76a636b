"""Every error status the server answers, provoked over real HTTP, with its JSON body."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

import dosirak
from dosirak.exceptions import BadInput, ServiceOverloaded
from dosirak.io import JSON, NumpyNdarray
from dosirak.observability.request_id import request_id
from live_server import serve

LIMIT = 64 * 1024
SECRET = "database password hunter2"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    svc = dosirak.Service("errors")

    @svc.api(input=NumpyNdarray(dtype="float32", shape=(-1, 4), enforce_dtype=True,
                                enforce_shape=True), output=NumpyNdarray())
    def classify(x: np.ndarray) -> np.ndarray:
        return x.sum(axis=1)

    @svc.api(input=JSON(), output=JSON())
    def crash(value: Any) -> Any:
        raise RuntimeError(SECRET)

    @svc.api(input=JSON(), output=JSON())
    async def crash_async(value: Any) -> Any:
        raise KeyError(SECRET)

    @svc.api(input=JSON(), output=JSON())
    def overloaded(value: Any) -> Any:
        raise ServiceOverloaded("the batch queue is full: 3 s of work waiting", retry_after=2.2)

    @svc.api(input=JSON(), output=JSON())
    def refuse(value: Any) -> Any:
        raise BadInput("age must be positive", [{"loc": ["body", "age"], "msg": "negative"}])

    with serve(svc, max_request_size=LIMIT) as base:
        yield base


def test_malformed_json_is_400(url: str) -> None:
    response = httpx.post(f"{url}/classify", content=b"[[1, 2, 3, 4]",
                          headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("malformed JSON at line 1 column 14")
    assert response.json()["detail"][0]["loc"] == ["body"]


def test_wrong_shape_and_dtype_are_400_naming_axis_and_dtype(url: str) -> None:
    shape = httpx.post(f"{url}/classify", json=[[1, 2, 3]])
    assert shape.status_code == 400
    assert shape.json()["detail"] == [{"loc": ["body", "axis 1"],
                                       "msg": "has 3 element(s), expected 4",
                                       "type": "shape_error"}]
    dtype = httpx.post(f"{url}/classify", json=[["a", "b", "c", "d"]])
    assert dtype.status_code == 400 and "float32" in dtype.json()["error"]


def test_bad_input_raised_by_user_code_is_400(url: str) -> None:
    response = httpx.post(f"{url}/refuse", json={})
    assert response.status_code == 400
    assert response.json() == {"error": "age must be positive",
                               "detail": [{"loc": ["body", "age"], "msg": "negative"}]}


def test_unknown_route_is_404(url: str) -> None:
    response = httpx.post(f"{url}/classifyy", json=[[1, 2, 3, 4]])
    assert response.status_code == 404
    assert response.json()["error"] == \
        "no route '/classifyy'; see /docs.json for this service's routes"


def test_wrong_method_is_405_with_allow(url: str) -> None:
    response = httpx.get(f"{url}/classify")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"] == "GET is not allowed on /classify; use POST"
    assert httpx.post(f"{url}/livez").status_code == 405


def test_unsupported_content_type_is_415(url: str) -> None:
    response = httpx.post(f"{url}/classify", content=b"<a/>",
                          headers={"content-type": "application/xml"})
    assert response.status_code == 415
    assert response.json() == {
        "error": "this API does not read application/xml; send one of "
                 "['application/json', 'application/x-npy']",
        "accepted": ["application/json", "application/x-npy"]}


def test_declared_oversize_body_is_413_before_it_is_sent(url: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n"
                           b"\r\n")
        head = _read_response(connection)
    assert head.startswith(b"HTTP/1.1 413")
    assert b"accepts at most 65536 bytes" in head


def test_chunked_oversize_body_is_413_while_reading(url: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"[" + b"1," * 20000
        # Send a little more than the limit, never the final chunk: a server that waited for
        # the whole body before checking would never answer.
        for _ in range(2):
            connection.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        head = _read_response(connection)
    assert head.startswith(b"HTTP/1.1 413")


def test_body_within_the_limit_is_fine(url: str) -> None:
    rows = [[1.0, 2.0, 3.0, 4.0]] * 2000  # about 40 KB of JSON
    response = httpx.post(f"{url}/classify", json=rows)
    assert response.status_code == 200 and len(response.json()) == 2000


def _read_response(connection: socket.socket) -> bytes:
    data = b""
    deadline = time.monotonic() + 10
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        if time.monotonic() > deadline:
            break
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_overloaded_is_503_with_retry_after(url: str) -> None:
    response = httpx.post(f"{url}/overloaded", json={})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"
    assert response.json() == {"error": "the batch queue is full: 3 s of work waiting"}


@pytest.mark.parametrize("route", ["/crash", "/crash_async"])
def test_exception_in_user_code_is_500_with_request_id_and_logged_traceback(
        url: str, route: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="dosirak.server"):
        response = httpx.post(f"{url}{route}", json={})
    assert response.status_code == 500
    body = response.json()
    assert SECRET not in response.text and "Traceback" not in response.text
    assert set(body) == {"error", "request_id"}
    assert response.headers["x-request-id"] == body["request_id"]
    records = [r for r in caplog.records if body["request_id"] in r.getMessage()]
    assert len(records) == 1 and records[0].exc_info is not None
    assert SECRET in str(records[0].exc_info[1])


def test_client_request_id_is_kept(url: str) -> None:
    response = httpx.post(f"{url}/crash", json={}, headers={"x-request-id": "abc-123"})
    assert response.json()["request_id"] == "abc-123"
    odd = httpx.post(f"{url}/crash", json={}, headers={"x-request-id": b"bad id\xe9"})
    replaced = odd.json()["request_id"]
    assert replaced != "bad id\xe9" and request_id(replaced) == replaced  # a fresh, sane id
    assert odd.headers["x-request-id"] == replaced


def test_readyz_is_503_until_the_service_has_started() -> None:
    svc = dosirak.Service("never_started")
    svc.api(input=JSON(), output=JSON())(_identity)
    with serve(svc, lifespan="off") as base:  # startup never runs
        response = httpx.get(f"{base}/readyz")
        assert response.status_code == 503
        assert response.text == "not ready: the service is starting"
        assert httpx.get(f"{base}/livez").text == "ok"


def _identity(value: Any) -> Any:
    return value
