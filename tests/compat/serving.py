"""Helpers of the BentoML 1.x compatibility tests: services written the way 1.x users write
them (``import dosirak as bentoml``), served by a real ``dosirak serve`` process."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from live_server import Served


def write_service(directory: Path, source: str, name: str = "service.py") -> Path:
    """Write a service module (dedented) into ``directory``; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")
    return path


@contextmanager
def served(directory: Path, source: str, target: str = "svc", *args: str,
           env: dict[str, str] | None = None) -> Iterator[Served]:
    """``dosirak serve service.py:TARGET`` of ``source`` written into ``directory``."""
    path = write_service(directory, source)
    with Served([f"{path}:{target}", *args], cwd=directory, env=env) as server:
        yield server
