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

Connections are guarded (``dosirak.serve.protocol``): limits on the request head, read
timeouts, a cap on open connections, and each answer written in one system call.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import logging
import resource
import socket
import termios
import time
from dataclasses import replace
from typing import Any

import uvicorn

from dosirak.serve.protocol import ConnectionLimits, guarded_protocol

logger = logging.getLogger("dosirak.serve")

#: How long a connection accepted from the backlog during shutdown may stay silent before it is
#: closed (its client connected before the stop; its request is normally already there).
NEW_CONNECTION_WAIT = 0.1
_POLL = 0.005


class HTTPServer(uvicorn.Server):
    """uvicorn's server with the graceful shutdown described in the module docstring."""

    def __init__(self, app: Any, *, grace: float, backlog: int = 2048,
                 keep_alive: float = 5.0, limits: ConnectionLimits | None = None,
                 ssl: Any = None, websockets: bool = True) -> None:
        self.limits = _within_open_file_limit(limits or ConnectionLimits())
        # TLS (``api_server.ssl``): uvicorn wraps the connections; the protocol is the same.
        tls = {} if ssl is None or not ssl.enabled else {
            "ssl_certfile": ssl.certfile, "ssl_keyfile": ssl.keyfile,
            "ssl_keyfile_password": ssl.keyfile_password, "ssl_ca_certs": ssl.ca_certs,
            "ssl_cert_reqs": ssl.cert_reqs, "ssl_ciphers": ssl.ciphers}
        config = uvicorn.Config(
            # log_config=None: uvicorn's dictConfig would switch back on every logger that
            # the serving configuration switched off (the access and prediction logs).
            app, http=guarded_protocol(self.limits), lifespan="off", log_config=None,
            log_level="warning", access_log=False, proxy_headers=False,
            server_header=False, backlog=backlog, timeout_keep_alive=keep_alive,  # type: ignore[arg-type]
            timeout_graceful_shutdown=grace,  # type: ignore[arg-type]
            # Without websockets, uvicorn imports no websocket library at startup (~7 ms of
            # the iris image's cold start); an upgrade request is then served as plain HTTP.
            ws="auto" if websockets else "none", **tls)
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
            await loop.connect_accepted_socket(lambda p=protocol: p, sock=sock)  # type: ignore[misc]
            adopted[id(protocol)] = time.monotonic()
        if adopted:
            logger.info("stopping: took %d connection(s) from the backlog", len(adopted))
        return adopted


def _within_open_file_limit(limits: ConnectionLimits) -> ConnectionLimits:
    """``limits`` with ``max_connections`` lowered to what the process may open.

    Past its open-file limit a process cannot accept at all, and every client then waits; the
    soft limit is raised to the hard one first (as most servers do), and a reserve is kept for
    the files, sockets and pipes the worker needs besides connections.
    """
    reserve = 128
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = limits.max_connections + reserve
        if soft != resource.RLIM_INFINITY and soft < wanted:
            soft = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    except (OSError, ValueError):
        return limits
    if soft == resource.RLIM_INFINITY or soft - reserve >= limits.max_connections:
        return limits
    capped = max(1, soft - reserve)
    logger.warning("api_server.http.max_connections lowered from %d to %d: the open-file limit "
                   "is %d (raise it with ulimit -n)", limits.max_connections, capped, soft)
    return replace(limits, max_connections=capped)


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
