"""The ceiling for batching over HTTP with the HTTP work spread over two processes.

``batch_limit.py`` handles every request and runs the batcher on one event loop, so in a closed
loop the 64 answers and the 64 next requests are handled one after another between two batches.
Here two HTTP processes (raw ASGI on uvicorn, both listening on one port) only parse a row and
forward it, and one model process owns the harness's synthetic model (5 ms + 0.05 ms per
row, pure sleep): it merges the rows of both into one batch, held until ``FULL`` rows wait or
the first has waited ``MAX_WAIT_S``, and runs batches strictly one at a time. No request ids
beyond the wire's, metrics, logs, validation or limits: the upper bound of a "shared runner"
(two API workers, one model process).

The wire is a unix socket in a private temporary directory, no pickle: a request is a request
id (uint64), a float count (uint32) and the row's float64 bytes; an answer is the id and the
predicted int64. Each side coalesces what one loop turn sends into one write.

    PYTHONPATH=../shared/bench/apps python benchmarks/apps/batch_limit_shared.py --port 3000

Each HTTP process listens on its own SO_REUSEPORT socket, so the kernel spreads connections by
hash; ``--accept shared`` has both accept from one inherited socket instead (as ``uvicorn
--workers 2`` does), where the first process to wake takes most of a burst of connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import orjson

FULL = int(os.environ.get("BATCH_LIMIT_FULL", "64"))
MAX_WAIT_S = 0.02
SOCKET_ENV = "BATCH_LIMIT_SHARED_SOCKET"
_REQUEST = struct.Struct("<QI")  # request id, number of float64 that follow
_ANSWER = struct.Struct("<Qq")  # request id, prediction
_HEADERS = [(b"content-type", b"application/json")]


# ---------------------------------------------------------------------------------------------
# Model process: one model, batches merged across connections, one batch at a time


class ModelConnection(asyncio.Protocol):
    """One HTTP process's link: cut its bytes into rows for the batcher."""

    def __init__(self, batcher: Batcher) -> None:
        self.batcher = batcher
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        offset, end = 0, len(buffer)
        rows: list[tuple[ModelConnection, int, bytes]] = []
        while end - offset >= _REQUEST.size:
            request_id, count = _REQUEST.unpack_from(buffer, offset)
            stop = offset + _REQUEST.size + 8 * count
            if stop > end:
                break
            rows.append((self, request_id, buffer[offset + _REQUEST.size:stop]))
            offset = stop
        self.buffer = buffer[offset:]
        if rows:
            self.batcher.add(rows)


class Batcher:
    """Queue rows from every connection; run the model on all of them, one batch at a time."""

    def __init__(self) -> None:
        self.rows: list[tuple[ModelConnection, int, bytes]] = []
        self.first_at = 0.0
        self.arrived = asyncio.Event()
        # One thread: a batch never overlaps another, as with one accelerator.
        self.executor = ThreadPoolExecutor(max_workers=1)

    def add(self, rows: list[tuple[ModelConnection, int, bytes]]) -> None:
        if not self.rows:
            self.first_at = time.monotonic()
            self.arrived.set()
        self.rows.extend(rows)
        if len(self.rows) >= FULL:
            self.arrived.set()

    async def run(self) -> None:
        import numpy as np
        from fake_model import fake_predict

        loop = asyncio.get_running_loop()
        while True:
            await self.arrived.wait()
            self.arrived.clear()
            if len(self.rows) < FULL:  # hold until full or the first row is too old
                left = self.first_at + MAX_WAIT_S - time.monotonic()
                if left > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.arrived.wait(), left)
                self.arrived.clear()
            rows, self.rows = self.rows, []
            if not rows:
                continue
            batch = np.frombuffer(b"".join(row for _, _, row in rows), dtype=np.float64)
            result = await loop.run_in_executor(
                self.executor, fake_predict, batch.reshape(len(rows), -1))
            answers: dict[ModelConnection, list[bytes]] = {}
            for (connection, request_id, _), value in zip(rows, result.tolist(), strict=True):
                answers.setdefault(connection, []).append(_ANSWER.pack(request_id, value))
            for connection, parts in answers.items():
                if not connection.transport.is_closing():  # that HTTP process went away
                    connection.transport.write(b"".join(parts))
            # Rows that came during the batch have already set ``arrived`` and ``first_at``.


async def serve_model(path: str) -> None:
    """Listen on ``path`` until the launcher goes away."""
    batcher = Batcher()
    loop = asyncio.get_running_loop()
    server = await loop.create_unix_server(lambda: ModelConnection(batcher), path)
    task = loop.create_task(batcher.run())
    parent = os.getppid()
    async with server:
        while os.getppid() == parent and not task.done():  # orphaned: stop
            await asyncio.sleep(0.5)
    if task.done():
        task.result()


# ---------------------------------------------------------------------------------------------
# HTTP processes: parse one row, forward it, answer with what comes back


class ModelClient(asyncio.Protocol):
    """This process's link to the model process; one write per loop turn."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.futures: dict[int, asyncio.Future[int]] = {}
        self.next_id = 0
        self.outgoing: list[bytes] = []
        self.buffer = b""
        self.row_structs: dict[int, struct.Struct] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def submit(self, row: list[float]) -> asyncio.Future[int]:
        if self.transport.is_closing():
            raise ConnectionError("the model process went away")
        packer = self.row_structs.get(len(row))
        if packer is None:
            packer = self.row_structs[len(row)] = struct.Struct(f"<{len(row)}d")
        request_id = self.next_id
        self.next_id += 1
        if not self.outgoing:
            self.loop.call_soon(self.flush)
        self.outgoing.append(_REQUEST.pack(request_id, len(row)) + packer.pack(*row))
        future = self.futures[request_id] = self.loop.create_future()
        return future

    def flush(self) -> None:
        self.transport.write(b"".join(self.outgoing))
        self.outgoing = []

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        usable = len(buffer) - len(buffer) % _ANSWER.size
        futures = self.futures
        for request_id, value in _ANSWER.iter_unpack(memoryview(buffer)[:usable]):
            futures.pop(request_id).set_result(value)
        self.buffer = buffer[usable:]

    def connection_lost(self, exc: Exception | None) -> None:
        for future in self.futures.values():
            if not future.done():
                future.set_exception(ConnectionError("the model process went away"))


_model: ModelClient | None = None
_requests = 0
_clients: set[tuple[str, int]] = set()


async def lifespan(receive, send) -> None:
    global _model
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            loop = asyncio.get_running_loop()
            _, _model = await loop.create_unix_connection(ModelClient, os.environ[SOCKET_ENV])
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            # Which process got which connections: one socket shared by two accept loops can
            # split them unevenly, and that split bounds what the second process adds.
            print(f"[http pid={os.getpid()}] requests={_requests} connections={len(_clients)}",
                  flush=True)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    """The same request path as ``batch_limit.app`` on purpose, so the two differ only in where
    the batch runs; a row goes to the model process instead of an in-process batcher."""
    global _requests
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
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
        _requests += 1
        _clients.add(scope["client"])
        (row,) = orjson.loads(body)
        answer = orjson.dumps([await _model.submit(row)])
    await send({"type": "http.response.start", "status": 200,
                "headers": [*_HEADERS, (b"content-length", str(len(answer)).encode())]})
    await send({"type": "http.response.body", "body": answer})


def serve_http(sock: socket.socket) -> None:
    """Run uvicorn (uvloop, httptools, like ``python -m uvicorn``'s defaults) on ``sock``."""
    import uvicorn

    config = uvicorn.Config(app, loop="uvloop", http="httptools", lifespan="on",
                            access_log=False, log_level="warning")
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the launcher's SIGINT
        uvicorn.Server(config).run(sockets=[sock])


def listening_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


# ---------------------------------------------------------------------------------------------
# Launcher: the model process, then two HTTP processes; stops them all on SIGINT/SIGTERM


def launch(host: str, port: int, accept: str) -> int:
    directory = tempfile.mkdtemp(prefix="batch-limit-shared-")
    path = os.path.join(directory, "model.sock")
    env = {**os.environ, SOCKET_ENV: path}
    children: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        children.append(subprocess.Popen([sys.executable, __file__, "model"], env=env))
        deadline = time.monotonic() + 30
        while not os.path.exists(path):
            if children[0].poll() is not None or time.monotonic() > deadline:
                print("the model process did not start listening", file=sys.stderr)
                return 1
            time.sleep(0.02)
        if accept == "shared":
            sock = listening_socket(host, port, reuse_port=False)
            command = [sys.executable, __file__, "http", "--fd", str(sock.fileno())]
            for _ in range(2):
                children.append(subprocess.Popen(command, env=env, pass_fds=[sock.fileno()]))
            sock.close()
        else:
            command = [sys.executable, __file__, "http", "--host", host, "--port", str(port)]
            for _ in range(2):
                children.append(subprocess.Popen(command, env=env))
        while all(child.poll() is None for child in children):
            time.sleep(0.2)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not skip this
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for child in reversed(children):  # HTTP processes first, so their rows get answers
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
                try:
                    child.wait(10)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("role", nargs="?", choices=["launch", "model", "http"], default="launch")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--accept", choices=["reuseport", "shared"], default="reuseport")
    parser.add_argument("--fd", type=int, help="(http role) an inherited listening socket")
    args = parser.parse_args()
    if args.role == "model":
        import uvloop

        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(serve_model(os.environ[SOCKET_ENV]))
        return 0
    if args.role == "http":
        if args.fd is not None:
            sock = socket.socket(fileno=args.fd)
        else:
            sock = listening_socket(args.host, args.port, reuse_port=True)
        serve_http(sock)
        return 0
    return launch(args.host, args.port, args.accept)


if __name__ == "__main__":
    sys.exit(main())
