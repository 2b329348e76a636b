"""Real servers on 127.0.0.1 (ephemeral ports) for HTTP tests.

    with serve(svc) as url:                      # uvicorn in a thread of this process
        httpx.post(f"{url}/classify", json=[[1, 2, 3, 4]])

    with Served(["examples/iris/service.py:svc"]) as server:   # a `dosirak serve` process
        server.post("/classify", [[5.1, 3.5, 1.4, 0.2]])
        server.lines                       # everything the processes wrote to stderr/stdout

``Served`` reads the URL from the supervisor's startup line; output is read by a thread so that a
chatty access log can never fill the pipe and stall the server. Every process is stopped by pid.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from dosirak.server.app import create_app
from dosirak.services import Service

DOSIRAK = str(Path(sys.executable).parent / "dosirak")
READY = re.compile(r"is ready at (http://\S+?)[ ;(]")


@contextlib.contextmanager
def serve(target: Service | Any, *, startup_timeout: float = 30.0, lifespan: str = "on",
          **options: Any) -> Iterator[str]:
    """Serve a Service (through ``create_app(target, **options)``) or an ASGI app; yield its URL.

    ``lifespan="off"`` serves without running the app's startup (the service never starts).
    """
    app = create_app(target, **options) if isinstance(target, Service) else target
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                            lifespan=lifespan, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the test server stopped during startup (see the log above)")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError("the test server did not start in time")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class Served:
    """A ``dosirak serve`` subprocess; a context manager that stops it (SIGTERM, then SIGKILL)."""

    def __init__(self, args: list[str], *, cwd: Path | str | None = None,
                 env: dict[str, str] | None = None, wait: bool = True,
                 timeout: float = 60.0, new_session: bool = False) -> None:
        self.args = args
        self.lines: list[str] = []
        self._changed = threading.Condition()
        command = [DOSIRAK, "serve", *args]
        if "--port" not in args:
            command += ["--port", "0"]
        self.process = subprocess.Popen(
            command, cwd=cwd, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=new_session)  # a group of its own, to signal it whole
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = ""
        if wait:
            self.wait_ready(timeout)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 30.0, start: int = 0) -> re.Match[str]:
        """The first output line from index ``start`` on matching ``pattern`` (a regex)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[start:]:
                    match = regex.search(line)
                    if match:
                        return match
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no line matching {pattern!r}; output:\n" +
                                         "\n".join(self.lines[-40:]))
                self._changed.wait(min(left, 0.1))

    def wait_ready(self, timeout: float = 60.0) -> str:
        self.url = self.wait_for(READY.pattern, timeout).group(1)
        self.port = int(self.url.rsplit(":", 1)[1])
        return self.url

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 10.0
                ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return (response.status, {k.lower(): v for k, v in response.getheaders()},
                    response.read())
        finally:
            connection.close()

    def post(self, path: str, value: Any, headers: dict[str, str] | None = None
             ) -> tuple[int, dict[str, str], Any]:
        status, answer_headers, body = self.request(
            "POST", path, json.dumps(value).encode(),
            {"content-type": "application/json", **(headers or {})})
        return status, answer_headers, json.loads(body) if body else None

    def get(self, path: str) -> tuple[int, bytes]:
        status, _, body = self.request("GET", path)
        return status, body

    def children(self) -> list[int]:
        """Pids of the supervisor's child processes (the API workers)."""
        return children_of(self.process.pid)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                for pid in [*descendants_of(self.process.pid), self.process.pid]:
                    kill(pid, signal.SIGKILL)
                self.process.wait()
        self._reader.join(5)
        return self.process.returncode

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                found.append(int(entry))
    return sorted(found)


def descendants_of(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in children_of(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
