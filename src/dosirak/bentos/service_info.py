"""What a bento records of its service, read at build time in a child process.

The build imports the bentofile's service in a fresh interpreter (``sys.executable -c``), so the
user's code, its frameworks and whatever they do at import time never enter the build process.
The child loads the service as ``dosirak serve`` does (``dosirak/target.py``) and writes one JSON
object on a private pipe (never pickle): the service's name, its runners, its APIs, the models
it uses and its OpenAPI document; or, when the import fails, the failure with the file and line.

    >>> reading = start_reading(Path("examples/iris"), "service.py:svc")
    >>> info = reading.result()          # ServiceInfo, or ServiceImportFailure
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dosirak.exit_status import describe_exit

IMPORT_TIMEOUT = 600.0  # seconds: heavy frameworks import in tens of seconds, not minutes
_CHILD = ("import sys; from dosirak.bentos.service_info import _child_main; "
          "_child_main(sys.argv[1], sys.argv[2], int(sys.argv[3]))")


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
                [sys.executable, "-c", _CHILD, str(root), service, str(write_end)],
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


# --- in the child -------------------------------------------------------------------------------


def _child_main(root: str, service: str, fd: int) -> None:
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        try:
            answer: dict[str, Any] = {"service": _describe(Path(root), service)}
        except Exception as error:  # every failure goes back as data, with where it happened
            answer = {"failure": _failure(Path(root), error)}
        out.write(json.dumps(answer, default=_plain))


def _describe(root: Path, service: str) -> dict[str, Any]:
    from dosirak.server.openapi import build_openapi
    from dosirak.target import load_service, parse_target

    svc = load_service(parse_target(service, cwd=root))
    runners = [_runner(runner) for runner in svc.runners]
    models = [tag for runner in runners for tag in runner["models"]]
    models += [_tag_of(model) for model in svc.models]
    return {
        "name": svc.name,
        "runners": runners,
        "apis": [{"name": api.name, "route": api.route,
                  "input": {"type": type(api.input).__name__, "spec": api.input.to_spec()},
                  "output": {"type": type(api.output).__name__, "spec": api.output.to_spec()}}
                 for api in svc.apis.values()],
        "models": list(dict.fromkeys(models)),
        "openapi": build_openapi(svc),
    }


def _runner(runner: Any) -> dict[str, Any]:
    methods = {}
    for name, method in (getattr(runner, "methods", None) or {}).items():
        signature = method.signature
        methods[name] = {"batchable": bool(signature.batchable),
                         "batch_dim": list(signature.batch_dim)}
    return {"name": runner.name,
            "models": [_tag_of(model) for model in getattr(runner, "models", None) or []],
            "methods": methods}


def _tag_of(model: Any) -> str:
    return str(getattr(model, "tag", model))


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays in examples
        return value.tolist()
    return str(value)


def _failure(root: Path, error: Exception) -> dict[str, Any]:
    # load_service wraps the import's own error; its cause (or context) says where it happened.
    original: BaseException = error.__cause__ or error
    if original is error and isinstance(error.__context__, SyntaxError):  # raised "from None"
        original = error.__context__
    if isinstance(original, SyntaxError) and original.filename:
        return {"message": f"SyntaxError: {original.msg}",
                "file": _shown(root, original.filename), "line": original.lineno}
    ours = Path(__file__).resolve().parents[1]  # dosirak's own frames do not say where
    frames = [frame for frame in traceback.extract_tb(original.__traceback__)
              if "importlib" not in frame.filename
              and not Path(frame.filename).resolve().is_relative_to(ours)]
    own = [frame for frame in frames if Path(frame.filename).resolve().is_relative_to(root)]
    frame = (own or frames or [None])[-1]
    missing = None  # a module not installed, even behind a framework's MissingDependency
    cause: BaseException | None = original if original is not error else None
    while cause is not None and missing is None:
        missing = cause.name if isinstance(cause, ModuleNotFoundError) else None
        cause = cause.__cause__
    message = str(error) if original is error else f"{type(original).__name__}: {original}"
    return {"message": message, "missing_module": missing,
            "file": _shown(root, frame.filename) if frame else None,
            "line": frame.lineno if frame else None}


def _shown(root: Path, filename: str) -> str:
    path = Path(filename).resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
