"""What one connection may ask of an API worker (``api_server.http``), against ``dosirak serve``.

Each test speaks raw HTTP over a socket, since well-behaved clients cannot send what is refused.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Served, wait_until

ECHO_SERVICE = """
import dosirak

svc = dosirak.Service("echo")


@svc.api(input=dosirak.io.JSON(), output=dosirak.io.JSON())
def echo(value):
    return value
"""
SHORT = ("api_server.http.head_timeout=1 api_server.http.body_timeout=1 "
         "api_server.http.max_connections=20")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("echo")
    (directory / "echo.py").write_text(ECHO_SERVICE)
    with Served([str(directory / "echo.py") + ":svc"],
                env={"DOSIRAK_CONFIG_OPTIONS": SHORT}) as served:
        yield served


def connect(server: Served) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.settimeout(10)
    return sock


def exchange(server: Served, data: bytes) -> bytes:
    """Send ``data`` on a new connection; everything the server sends until it closes."""
    with connect(server) as sock:
        with contextlib.suppress(OSError):  # the server may close before it has read it all
            sock.sendall(data)
        return read_to_close(sock)


def read_to_close(sock: socket.socket) -> bytes:
    answer = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def status_and_error(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower(), head
    return int(head.split()[1]), json.loads(body)["error"]


def test_a_head_over_the_size_limit_is_answered_431(server: Served) -> None:
    big = b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"
    status, error = status_and_error(exchange(server, big))
    assert status == 431
    assert "65536 bytes" in error and "api_server.http.max_header_bytes" in error


def test_more_header_fields_than_allowed_are_answered_431(server: Served) -> None:
    fields = b"".join(b"X-%d: 1\r\n" % i for i in range(101))
    status, error = status_and_error(exchange(server, b"GET /livez HTTP/1.1\r\n" + fields +
                                              b"\r\n"))
    assert status == 431
    assert "more than 100 header fields" in error


def test_a_request_target_over_the_size_limit_is_answered_414(server: Served) -> None:
    status, error = status_and_error(exchange(server, b"GET /" + b"a" * 70_000 +
                                              b" HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert status == 414
    assert "request target" in error


@pytest.mark.parametrize("request_line", [b"GET /livez\r\n\r\n",  # HTTP/0.9
                                          b"GET /livez HTTP/2.0\r\nHost: x\r\n\r\n"])
def test_http_versions_other_than_1_0_and_1_1_are_answered_505(server: Served,
                                                                request_line: bytes) -> None:
    status, error = status_and_error(exchange(server, request_line))
    assert status == 505
    assert "send HTTP/1.1" in error


def test_http_1_0_and_1_1_are_served(server: Served) -> None:
    for version in (b"1.0", b"1.1"):
        answer = exchange(server, b"GET /livez HTTP/" + version +
                          b"\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 "), answer


def test_a_websocket_upgrade_is_answered_as_http_without_warnings(server: Served) -> None:
    """The service serves no websocket, so its worker has no implementation loaded: the
    request is answered as plain HTTP, and a client cannot fill the log with uvicorn's
    warnings (advice to install a websocket library included)."""
    start = len(server.lines)
    answer = exchange(server, b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\n"
                              b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    server.wait_for(r"path=/livez status=200", start=start)
    assert not [line for line in server.lines[start:] if "WARNING" in line]


def test_a_head_that_stops_arriving_is_answered_408(server: Served) -> None:
    started = time.monotonic()
    status, error = status_and_error(exchange(server, b"GET /livez HTTP/1.1\r\nHo"))
    waited = time.monotonic() - started
    assert status == 408
    assert "api_server.http.head_timeout" in error
    assert 1.0 <= waited < 5.0  # never before the timeout; a few sweeps after it at most


def test_a_connection_that_never_sends_is_closed_without_an_answer(server: Served) -> None:
    started = time.monotonic()
    with connect(server) as sock:
        assert read_to_close(sock) == b""
    assert 1.0 <= time.monotonic() - started < 5.0


def test_a_body_that_stops_arriving_is_answered_408_and_logged_as_408(server: Served) -> None:
    start = len(server.lines)
    head = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10\r\n\r\n[1,")
    status, error = status_and_error(exchange(server, head))
    assert status == 408
    assert "api_server.http.body_timeout" in error
    # Not a disconnect of the client's (499) nor a server error (504): the access log says 408.
    line = server.wait_for(r"path=/echo status=\d+", start=start).group(0)
    assert line.endswith("status=408")


def test_many_stalled_heads_are_all_closed_and_others_are_served(server: Served) -> None:
    stalled = [connect(server) for _ in range(15)]
    try:
        for sock in stalled:
            sock.sendall(b"GET /livez HTTP/1.1\r\n")
        # While they hold their connections, another client is answered at once.
        assert server.get("/livez")[0] == 200
        for sock in stalled:
            assert read_to_close(sock).startswith(b"HTTP/1.1 408 ")
    finally:
        for sock in stalled:
            sock.close()


def test_connections_past_the_limit_are_answered_503_and_closed(server: Served) -> None:
    held = [connect(server) for _ in range(20)]
    try:
        # The server has taken them all (each opened connection is counted when accepted).
        wait_until(lambda: exchange(server, b"").startswith(b"HTTP/1.1 503 "), timeout=5)
        answer = exchange(server, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        status, error = status_and_error(answer)
        assert status == 503
        assert b"retry-after: 1" in answer.lower()
        assert "api_server.http.max_connections" in error
    finally:
        for sock in held:
            sock.close()
    # Once they are gone, new connections are served again.
    wait_until(lambda: server.get("/livez")[0] == 200, timeout=5)


def test_limits_are_validated_in_the_configuration(tmp_path: Path) -> None:
    from dosirak.config import load_config
    from dosirak.exceptions import InvalidArgument

    with pytest.raises(InvalidArgument, match="head_timeout"):
        load_config(environ={"DOSIRAK_CONFIG_OPTIONS": "api_server.http.head_timeout=.inf"})
    with pytest.raises(InvalidArgument, match="max_headers"):
        load_config(environ={"DOSIRAK_CONFIG_OPTIONS": "api_server.http.max_headers=0"})
