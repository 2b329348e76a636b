"""What a bento records of its service, read at build time in a child process.

The build imports the bentofile's service in a fresh interpreter (``sys.executable -c``), so the
user's code, its frameworks and whatever they do at import time never enter the build process.
The child (``python -m dosirak.bentos.read_service``) loads the service as ``dosirak serve``
does (``dosirak/target.py``) and writes one JSON object on a private pipe (never pickle): the
service's name, its runners, its APIs, the models it uses and its OpenAPI document; or, when the
import fails, the failure with the file and line.

    >>> reading = start_reading(Path("examples/iris"), "service.py:svc")
    >>> info = reading.result()          # ServiceInfo, or ServiceImportFailure
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dosirak.exit_status import describe_exit

IMPORT_TIMEOUT = 600.0  # seconds: heavy frameworks import in tens of seconds, not minutes
# The child program: it loads the service (dosirak.target) and describes it (server.openapi),
# which this module, a part of the bento layer below both, never imports itself.
_CHILD = "dosirak.bentos.read_service"


@dataclass(frozen=True)
class ServiceInfo:
    """The service as the bento records it (plain data)."""

    name: str
    runners: list[dict[str, Any]]
    apis: list[dict[str, Any]]
    models: list[str]  # full tags of the models the runners and the service use
    openapi: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class ServiceImportFailure:
    """Why the service could not be imported: ``missing_module`` is set for a
    ModuleNotFoundError of a module other than the service's own."""

    message: str
    file: str | None = None
    line: int | None = None
    missing_module: str | None = None

    def __str__(self) -> str:
        return f"{self.file}, line {self.line}: {self.message}" if self.file else self.message


class ServiceReading:
    """A child process reading the service; ``result()`` waits for it."""

    def __init__(self, root: Path, service: str) -> None:
        read_end, write_end = os.pipe()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", _CHILD, str(root), service, str(write_end)],
                cwd=root, pass_fds=(write_end,), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        self._pipe = os.fdopen(read_end, "rb")

    def result(self, timeout: float = IMPORT_TIMEOUT) -> ServiceInfo | ServiceImportFailure:
        # An import that hangs (a network call at import time) is killed, not waited on forever.
        timer = threading.Timer(timeout, self._process.kill)
        timer.start()
        try:
            with self._pipe:
                text = self._pipe.read()
            _, stderr = self._process.communicate()
        finally:
            timer.cancel()
        try:
            data = json.loads(text)
        except ValueError:
            tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
            late = f" after {timeout:g} s" if self._process.returncode == -9 else ""
            return ServiceImportFailure(
                f"the process importing the service ended{late} without an answer "
                f"({describe_exit(self._process.returncode)}){': ' if tail else ''}"
                f"{' / '.join(tail)}")
        if "failure" in data:
            return ServiceImportFailure(**data["failure"])
        return ServiceInfo(**data["service"])

    def kill(self) -> None:
        self._process.kill()
        self._process.wait()
        self._pipe.close()


def start_reading(root: Path, service: str) -> ServiceReading:
    """Start importing ``service`` ("module:attr" or "dir/file.py:attr", relative to ``root``)
    in a child process; the caller does other work, then calls ``result()``."""
    return ServiceReading(root, service)
