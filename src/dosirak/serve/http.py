"""One API worker's HTTP server: uvicorn on the shared socket, stopping without losing requests.

    >>> server = HTTPServer(app, grace=30.0, backlog=2048)
    >>> await server.serve(sockets=[listening_socket])   # until SIGTERM/SIGINT, then drains

uvicorn parses HTTP (httptools, on uvloop when installed). On SIGTERM or SIGINT, uvicorn's own
shutdown closes idle keep-alive connections at once, and a request the client had already sent on
one (still unread in the kernel's buffer) is lost, as are connections waiting in the listening
socket's backlog. This server's shutdown instead:

1. takes the connections already queued in the backlog (their clients connected before the stop)
   and stops accepting;
2. lets every request in progress finish and answers it with ``Connection: close``;
3. closes an idle connection only once no request bytes wait on it, so a request that reached the
   machine before the stop is read and answered;
4. gives up after ``grace`` seconds: what is still running is cancelled.

Each answer leaves in one write: uvicorn writes a response's head and body separately, two
system calls and two TCP segments for a small answer, a tenth of the server's CPU at 10,000
requests per second. ``CoalescingTransport`` gathers what one turn of the event loop writes to a
connection and sends it at the end of that turn.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import logging
import socket
import termios
import time
from typing import Any

import uvicorn

logger = logging.getLogger("dosirak.serve")

#: How long a connection accepted from the backlog during shutdown may stay silent before it is
#: closed (its client connected before the stop; its request is normally already there).
NEW_CONNECTION_WAIT = 0.1
_POLL = 0.005
# Writes queued in one turn are joined into one buffer up to this size.
_JOIN_BELOW = 1 << 16


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


def _protocol_class() -> Any:
    """uvicorn's httptools protocol writing through a ``CoalescingTransport``; uvicorn's own
    choice (h11) when httptools is missing."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "auto"

    class CoalescingHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(CoalescingTransport(transport, self.loop))

    return CoalescingHttpToolsProtocol


class HTTPServer(uvicorn.Server):
    """uvicorn's server with the graceful shutdown described in the module docstring."""

    def __init__(self, app: Any, *, grace: float, backlog: int = 2048,
                 keep_alive: float = 5.0) -> None:
        config = uvicorn.Config(
            # log_config=None: uvicorn's dictConfig would switch back on every logger that
            # the serving configuration switched off (the access and prediction logs).
            app, http=_protocol_class(), lifespan="off", log_config=None, log_level="warning",
            access_log=False, proxy_headers=False,
            server_header=False, backlog=backlog, timeout_keep_alive=keep_alive,
            timeout_graceful_shutdown=grace)
        super().__init__(config)
        self.grace = grace
        self._listeners: list[socket.socket] = []

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # A duplicate of each listening socket, to take the backlog at shutdown after uvicorn's
        # own servers are closed.
        self._listeners = [sock.dup() for sock in sockets or []]
        await super().startup(sockets=sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        started = time.monotonic()
        deadline = started + self.grace
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        adopted = await self._take_backlog()
        connections = self.server_state.connections
        if connections:
            logger.info("stopping: finishing %d open connection(s) (grace %.0f s)",
                        len(connections), self.grace)
        while connections and time.monotonic() < deadline:
            now = time.monotonic()
            for connection in list(connections):
                _wind_down(connection, now, adopted.get(id(connection), 0.0))
            await asyncio.sleep(_POLL)
        if connections:
            logger.warning("stopping: %d connection(s) still busy after %.0f s; closing them",
                           len(connections), self.grace)
            for connection in list(connections):
                connection.transport.close()
        tasks = self.server_state.tasks
        if tasks:
            await asyncio.wait(list(tasks), timeout=max(0.0, deadline - time.monotonic()))
            for task in list(tasks):
                task.cancel()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    async def _take_backlog(self) -> dict[int, float]:
        """Accept the connections queued on the listening sockets; return their start times.

        One pass, with no await in it: clients that connect while the queue is emptied came
        after the stop, and must not keep it going.
        """
        loop = asyncio.get_running_loop()
        config = self.config
        accepted = []
        for listener in self._listeners:
            for _ in range(config.backlog):
                try:
                    sock, _ = listener.accept()
                except OSError:  # BlockingIOError: the queue is empty
                    break
                accepted.append(sock)
            listener.close()
        self._listeners = []
        adopted: dict[int, float] = {}
        for sock in accepted:
            protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state,
                app_state=self.lifespan.state, _loop=loop)
            sock.setblocking(False)
            await loop.connect_accepted_socket(lambda p=protocol: p, sock=sock)
            adopted[id(protocol)] = time.monotonic()
        if adopted:
            logger.info("stopping: took %d connection(s) from the backlog", len(adopted))
        return adopted


def _wind_down(connection: Any, now: float, adopted_at: float) -> None:
    """Close ``connection`` once it is idle with nothing unread; else close after its answer."""
    cycle = getattr(connection, "cycle", None)
    if cycle is not None and not cycle.response_complete:
        cycle.keep_alive = False  # answered with Connection: close, then closed
        return
    if getattr(connection, "pipeline", None):
        return  # requests queued behind the last one; each gets its turn
    transport = connection.transport
    if transport.is_closing():
        return
    if _unread_bytes(transport) > 0:
        return  # a request is arriving: the protocol reads it on the next turn of the loop
    if adopted_at and now - adopted_at < NEW_CONNECTION_WAIT:
        return
    transport.close()


def _unread_bytes(transport: Any) -> int:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    buffer = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, buffer, True)
    except OSError:
        return 0
    return buffer[0]
