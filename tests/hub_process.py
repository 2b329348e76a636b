"""A real ``dosirak hub serve`` process for tests (tests/hub and any other suite that needs a
hub): started on 127.0.0.1 with an ephemeral port, its output read by a thread, stopped by pid."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from dosirak.hub.client import HubClient

DOSIRAK = str(Path(sys.executable).parent / "dosirak")
READY = re.compile(r"dosirak hub is ready at (http://\S+)")


class HubProcess:
    """One ``dosirak hub serve`` process; its output is read by a thread into ``lines``."""

    def __init__(self, data: Path, *args: str, env: dict[str, str] | None = None,
                 command: str = "hub serve") -> None:
        self.data = data
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [DOSIRAK, *command.split(), "--data", str(data), *args,
             *(() if "--port" in args else ("--port", "0"))],
            env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self._wait_ready()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def _wait_ready(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := READY.search(line):
                    return match.group(1)
            if self.process.poll() is not None:
                time.sleep(0.2)
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError("the hub did not start; output:\n" + "\n".join(self.lines[-40:]))

    @property
    def admin_token(self) -> str:
        return (self.data / "admin-token").read_text().strip()

    def client(self, token: str | None = None) -> HubClient:
        return HubClient(self.url, token or self.admin_token)

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {} if token == "" else {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
