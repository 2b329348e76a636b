"""The HTTP protocol of an API worker's connections: uvicorn's httptools parser, guarded.

    >>> protocol_class = guarded_protocol(ConnectionLimits(max_header_bytes=65536, ...))
    >>> uvicorn.Config(app, http=protocol_class, ...)

uvicorn's httptools protocol trusts the client: a head of any size or header count is read
whole, a head or body that stops arriving holds its connection forever, any number of
connections stay open, and an HTTP/0.9 request line is served. Each is a way for one client to
take a worker's memory or its connection slots. This protocol refuses them before the request
reaches the app:

- a head larger than ``max_header_bytes`` or with more than ``max_headers`` fields: **431**;
- a head not complete ``head_timeout`` seconds after its first byte (or after the connection
  opened), or a body that goes ``body_timeout`` seconds without a byte: **408**, then the
  connection is closed (a connection that never sent a byte is closed without an answer);
- a connection past ``max_connections``: **503** with ``Retry-After``, then closed;
- a request line that is not HTTP/1.0 or HTTP/1.1: **505**.

The timeouts cost nothing per request: each connection notes when it started waiting (a
coarse clock kept by one sweeper per server, so no timer per request), and the sweeper closes
the ones that waited too long, a few times per timeout. A body stalled because the server paused
reading (flow control) is not the client's fault and is not timed.

It also writes each answer in one system call (``CoalescingTransport``): uvicorn writes a
response's head and body separately, two system calls and two TCP segments for a small answer,
a tenth of the server's CPU at 10,000 requests per second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from dosirak.server.traffic import CLOSED_WITH

logger = logging.getLogger("dosirak.serve")

# Writes queued in one turn are joined into one buffer up to this size.
_JOIN_BELOW = 1 << 16
# Bytes a header field adds to the head beyond its name and value (": " and CRLF).
_FIELD_OVERHEAD = 4


@dataclass(frozen=True)
class ConnectionLimits:
    """What one connection may ask of the server (``api_server.http`` in the configuration)."""

    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    head_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 4096


def connection_limits(section: Any) -> ConnectionLimits:
    """The limits of the configuration's ``api_server.http`` section."""
    return ConnectionLimits(max_header_bytes=int(section.max_header_bytes),
                            max_headers=section.max_headers, head_timeout=section.head_timeout,
                            body_timeout=section.body_timeout,
                            max_connections=section.max_connections)


class CoalescingTransport:
    """A connection's transport whose writes of one loop turn go out in a single write."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        """Queue ``data``; everything queued in this turn of the loop is written at its end."""
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self._flush)
        else:
            self._pending.append(data)

    def _flush(self) -> None:
        pending = self._pending
        self._pending = None
        if not pending or self._transport.is_closing():
            return
        if len(pending) == 1:
            self._transport.write(pending[0])
        elif sum(len(part) for part in pending) <= _JOIN_BELOW:
            self._transport.write(b"".join(pending))
        else:  # large bodies: no copy just to save a system call
            for part in pending:
                self._transport.write(part)

    def close(self) -> None:
        """Write what is queued, then close."""
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        """Drop what is queued and close at once."""
        self._pending = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing a request that breaks a limit."""


def refusal(status: int, reason: str, message: str, *extra: bytes) -> bytes:
    """A complete ``Connection: close`` answer with a JSON error body, as raw bytes."""
    from dosirak.io.encoding import dumps

    body = dumps({"error": message})
    head = [f"HTTP/1.1 {status} {reason}".encode(), b"content-type: application/json",
            b"content-length: " + str(len(body)).encode(), b"connection: close", *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class _Sweeper:
    """One per server: keeps the coarse clock and closes connections that waited too long."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.now = time.monotonic()
        self.every = min(1.0, limits.head_timeout / 4, limits.body_timeout / 4)
        self.connections: set[Any] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._timed_out = 0

    def watch(self, connections: set[Any], loop: asyncio.AbstractEventLoop) -> None:
        """Start sweeping ``connections`` (the server's set) unless already sweeping."""
        self.now = time.monotonic()
        if self._handle is None:
            self.connections = connections
            self._handle = loop.call_later(self.every, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self.now = time.monotonic()
        # A connection's start was noted on the coarse clock, up to one sweep before the truth:
        # measured from one sweep ago, no connection is closed before its time.
        now = self.now - self.every
        limits = self.limits
        for connection in list(self.connections or ()):
            if getattr(connection, "timed_out", None) is not None \
                    and connection.timed_out(now, limits):
                self._timed_out += 1
        if self._timed_out:
            logger.warning("closed %d connection(s) whose client stopped sending "
                           "(api_server.http.head_timeout %g s, body_timeout %g s)",
                           self._timed_out, limits.head_timeout, limits.body_timeout)
            self._timed_out = 0
        self._handle = loop.call_later(self.every, self._sweep, loop) if self.connections \
            else None


def guarded_protocol(limits: ConnectionLimits) -> Any:
    """uvicorn's httptools protocol with ``limits`` enforced and coalesced writes; uvicorn's own
    choice (h11, without these limits) when httptools is missing."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "auto"

    sweeper = _Sweeper(limits)
    too_busy = refusal(503, "Service Unavailable",
                       f"this server holds at most {limits.max_connections} open connections "
                       "per worker and is at that limit; retry shortly "
                       "(api_server.http.max_connections)", b"retry-after: 1")
    head_too_slow = refusal(408, "Request Timeout",
                            f"the request head did not arrive within {limits.head_timeout:g} s "
                            "(api_server.http.head_timeout)")
    body_too_slow = refusal(408, "Request Timeout",
                            f"no byte of the request body arrived for {limits.body_timeout:g} s "
                            "(api_server.http.body_timeout)")
    head_too_large = (431, "Request Header Fields Too Large",
                      f"the request head is larger than {limits.max_header_bytes} bytes "
                      "(api_server.http.max_header_bytes)")
    url_too_long = (414, "URI Too Long",
                    f"the request target is longer than {limits.max_header_bytes} bytes "
                    "(api_server.http.max_header_bytes)")
    too_many_headers = (431, "Request Header Fields Too Large",
                        f"the request has more than {limits.max_headers} header fields "
                        "(api_server.http.max_headers)")
    max_bytes = limits.max_header_bytes
    max_headers = limits.max_headers
    # uvicorn's own methods, called directly: a super() lookup costs more, and these run on
    # every request. Only one parser callback is overridden (the head's end); sizes and progress
    # are noted once per read instead of once per header or body callback.
    receive_data = HttpToolsProtocol.data_received
    complete_head = HttpToolsProtocol.on_headers_complete

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        # When the head began to arrive (or the connection opened), until it is complete.
        _head_since: float | None = None
        # When bytes last arrived (a body is timed from there while it is incomplete).
        _last_data = 0.0
        _head_begun = False
        _head_bytes = 0
        _refused: tuple[int, str, str] | None = None
        _turned_away = False

        def connection_made(self, transport: Any) -> None:
            if len(self.server_state.connections) >= limits.max_connections:
                # Never registered: the server neither counts nor sweeps it.
                self._turned_away = True
                transport.write(too_busy)
                transport.close()
                return
            super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
            sweeper.watch(self.connections, self.loop)
            self._head_since = sweeper.now

        def connection_lost(self, exc: Exception | None) -> None:
            if not self._turned_away:
                super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._turned_away:
                return
            now = self._last_data = sweeper.now
            if not self._head_begun:
                cycle = self.cycle
                if cycle is None or not cycle.more_body:  # no body awaited: a head begins
                    self._head_begun = True
                    if self._head_since is None:  # (set when the connection opened)
                        self._head_since = now
            if self._head_begun:
                # Counted per read, not per header: an upper bound of the head's size (the read
                # may hold body bytes too), made exact only when it passes the limit.
                self._head_bytes += len(data)
            receive_data(self, data)
            if self._head_begun and self._head_bytes > max_bytes \
                    and not self.transport.is_closing():  # the head goes on past the limit
                self._send_refusal(url_too_long if len(self.url) > max_bytes else head_too_large)

        def on_headers_complete(self) -> None:
            version = self.parser.get_http_version()
            if version != "1.1" and version != "1.0":
                self._refuse((505, "HTTP Version Not Supported",
                              f"HTTP/{version} is not supported; send HTTP/1.1"))
            headers = self.headers
            if len(headers) > max_headers:
                self._refuse(too_many_headers)
            if self._head_bytes > max_bytes:  # an upper bound: measure the head itself
                if len(self.url) > max_bytes:
                    self._refuse(url_too_long)
                if len(self.url) + sum(len(name) + len(value) + _FIELD_OVERHEAD
                                       for name, value in headers) > max_bytes:
                    self._refuse(head_too_large)
            self._head_since = None
            self._head_begun = False
            self._head_bytes = 0
            complete_head(self)

        def _unsupported_upgrade_warning(self) -> None:
            # A server without a websocket implementation (HTTPServer: the service serves
            # none) answers an upgrade as plain HTTP; uvicorn's two warnings a request, advice
            # to install a library included, would only let any client fill the log.
            if self.ws_protocol_class is not None:
                super()._unsupported_upgrade_warning()

        def _refuse(self, refusal_: tuple[int, str, str]) -> None:
            self._refused = refusal_
            raise _Refused(refusal_[2])

        def send_400_response(self, msg: str) -> None:
            # uvicorn answers every parser error 400; a limit of ours has its own status.
            if self._refused is None:
                super().send_400_response(msg)
            else:
                self._send_refusal(self._refused)

        def _send_refusal(self, refusal_: tuple[int, str, str]) -> None:
            self._head_begun = False
            self.transport.write(refusal(*refusal_))
            self.transport.close()

        def timed_out(self, now: float, limits: ConnectionLimits) -> bool:
            """Close this connection if its client stopped sending; say whether it did."""
            transport = self.transport
            if transport is None or transport.is_closing():
                return False
            since = self._head_since
            if since is not None and now - since > limits.head_timeout:
                self._head_since = None
                if self._head_begun:
                    transport.write(head_too_slow)
                transport.close()
                return True
            cycle = self.cycle
            # A body is awaited while its request's cycle wants more and has not been answered;
            # a read the server paused itself (flow control) is not the client's delay.
            if cycle is None or not cycle.more_body or cycle.response_complete \
                    or self._head_begun or self.flow.read_paused \
                    or now - self._last_data <= limits.body_timeout:
                return False
            if not cycle.response_started:
                cycle.scope[CLOSED_WITH] = 408  # type: ignore[literal-required]
                transport.write(body_too_slow)
                cycle.disconnected = True
                cycle.message_event.set()
            transport.close()
            return True

    return GuardedHttpToolsProtocol
