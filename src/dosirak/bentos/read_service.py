"""The child program of ``dosirak.bentos.service_info``: import a service, describe it.

    python -m dosirak.bentos.read_service ROOT SERVICE FD

Loads ``SERVICE`` ("module:attr" or "dir/file.py:attr", relative to ``ROOT``) as ``dosirak
serve`` does, and writes one JSON object to the file descriptor ``FD``: ``{"service": {...}}``
(name, runners, APIs, models, OpenAPI document) or ``{"failure": {...}}`` (message, file,
line, missing module). It sits above the server and the target loader, which it imports; the
build that runs it imports neither.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any


def main(root: str, service: str, fd: int) -> None:
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
    frame = (own or frames)[-1] if own or frames else None
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


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
