"""``dosirak.HTTPServer``: a service served by ``dosirak serve`` in a background process.

    >>> server = dosirak.HTTPServer("iris_classifier:latest", port=3000)
    >>> with server.start() as client:              # waits until the service is ready
    ...     client.classify(np.array([[5.9, 3.0, 5.1, 1.8]]))
    >>> # leaving the block closes the client and stops the server

    >>> with dosirak.HTTPServer("service.py:svc") as server:    # port 0: a free one
    ...     server.get_client().classify(...)

BentoML 1.x's way to serve from a script, a notebook or a test. The target is what ``dosirak
serve`` takes (a bento tag, ``module:svc``, a directory). The process is a real server (its own
workers, the serving configuration); its output goes to this process's standard error unless
``output`` says otherwise. ``stop()`` sends SIGTERM (requests in flight finish) and waits.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from dosirak.client.sync import SyncHTTPClient
from dosirak.exceptions import InvalidArgument, ServiceUnreachable

_READY = re.compile(r"is ready at (https?://\S+?)[ ;(]")


class HTTPServer:
    """``dosirak serve TARGET`` as a child process; see the module docstring."""

    def __init__(self, bento: str | os.PathLike[str] | Any, port: int = 3000, *,
                 host: str = "127.0.0.1", workers: int | None = None,
                 production: bool = True, working_dir: str | os.PathLike[str] | None = None,
                 config_file: str | os.PathLike[str] | None = None, timeout: float = 120.0,
                 output: IO[str] | None = None, args: list[str] | None = None) -> None:
        target = getattr(bento, "tag", bento)  # a Bento or a Tag works as well as its text
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise InvalidArgument(f"port must be 0-65535 (0: a free one), got {port!r}")
        self.target = str(target)
        self.host = host
        self.port = port
        self.timeout = timeout
        self.production = production  # accepted: dosirak always serves for production
        self.output = output
        command = [str(Path(sys.executable).parent / "dosirak"), "serve", self.target,
                   "--host", host, "--port", str(port)]
        if workers is not None:
            command += ["--workers", str(workers)]
        if working_dir is not None:
            command += ["--working-dir", str(working_dir)]
        if config_file is not None:
            command += ["--config", str(config_file)]
        self.command = command + list(args or [])
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self._ready = threading.Event()
        self._lines: list[str] = []
        self._client: SyncHTTPClient | None = None

    def __repr__(self) -> str:
        state = f"running at {self.url}" if self.running else "stopped"
        return f"HTTPServer({self.target!r}, {state})"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, blocking: bool = False) -> SyncHTTPClient:
        """Start the server and wait until it is ready; return a client of it. The client is a
        context manager that stops the server on exit. ``blocking``: serve until it stops."""
        if self.running:
            raise InvalidArgument(f"{self!r} is started already")
        self._ready.clear()
        self._lines.clear()
        self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        threading.Thread(target=self._read, args=(self.process,), daemon=True,
                         name="dosirak-http-server").start()
        if not self._ready.wait(self.timeout) or not self.url:
            tail = "\n".join(self._lines[-20:])
            self.stop()
            raise ServiceUnreachable(f"dosirak serve {self.target} did not become ready within "
                                     f"{self.timeout:g} s; its output:\n{tail}")
        if blocking:
            try:
                self.process.wait()
            finally:
                self.stop()
        self._client = _ServerClient(self, self.url, timeout=self.timeout)
        return self._client

    def get_client(self) -> SyncHTTPClient:
        """The client of the running server (made by ``start``)."""
        if self._client is None or not self.running:
            raise InvalidArgument(f"{self!r} is not running: call start() first")
        return self._client

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server (SIGTERM: requests in flight finish; SIGKILL after ``timeout``)."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._client is not None:
            SyncHTTPClient.close(self._client)
            self._client = None

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._lines.append(line.rstrip("\n"))
            del self._lines[:-200]
            (self.output or sys.stderr).write(line)
            if not self._ready.is_set():
                match = _READY.search(line)
                if match:
                    self.url = match.group(1)
                    self._ready.set()
        self._ready.set()  # it ended: start() stops waiting

    def __enter__(self) -> HTTPServer:
        if not self.running:
            self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


class _ServerClient(SyncHTTPClient):
    """A client whose ``with`` block also stops the server it came from."""

    def __init__(self, server: HTTPServer, url: str, **options: Any) -> None:
        self._server = server
        super().__init__(url, wait_ready=True, **options)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._server.stop()
