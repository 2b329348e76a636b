"""Deploying bentos: OCI images (``dosirak containerize``), Kubernetes manifests and compose
files (``dosirak deploy``).

    >>> import dosirak.deploy
    >>> result = dosirak.deploy.containerize("iris_classifier:latest", tags=["iris:1"])
    >>> result.image_id, result.backend

Modules: ``dockerfile`` (the Dockerfile, quoting), ``context`` (the build context of a bento),
``wheels`` (dosirak's wheel, wheels fetched on the host), ``backends`` (docker, podman, buildah),
``entrypoint`` and ``healthcheck`` (run inside the image), ``kubernetes`` and ``compose``.

Importing this package imports none of them: ``entrypoint`` and ``healthcheck`` run inside the
image on every start and every health check, and must not pay for the build machinery (the
bento store, Jinja2, the engines): about 0.3 s of a container's cold start.
"""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dosirak.deploy.backends import Backend, find_backend
    from dosirak.deploy.context import Plan, plan, write_context

_LAZY = {"Backend": "dosirak.deploy.backends", "find_backend": "dosirak.deploy.backends",
         "Plan": "dosirak.deploy.context", "plan": "dosirak.deploy.context",
         "write_context": "dosirak.deploy.context"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dosirak.deploy' has no attribute {name!r}")


@dataclass(frozen=True)
class Containerized:
    """What ``containerize`` did: the image built (or the context written, or the plan)."""

    plan: Plan
    tags: list[str]
    backend: Backend | None = None
    command: list[str] | None = None
    image_id: str | None = None
    context: Path | None = None


def default_image_tags(bento_tag: str) -> list[str]:
    """BentoML's default: the image is tagged as the bento (``name:version``)."""
    return [bento_tag]


def containerize(tag: str, *, tags: Sequence[str] = (), backend: str = "auto",
                 output: str | Path | None = None, build_args: Mapping[str, str] | None = None,
                 platform: str | None = None, dry_run: bool = False, vendor: bool = True,
                 report: Callable[[str], None] = lambda line: None,
                 build_output: Callable[[str], None] = lambda line: None) -> Containerized:
    """Build an OCI image of the bento ``tag``.

    ``output``: write the build context there and build nothing. ``dry_run``: read the bento
    and find the engine, write and build nothing (``result.plan.dockerfile`` and
    ``result.command`` say what would run). ``vendor=False`` installs the requirements from
    the package index inside the build instead of wheels fetched on this machine.
    """
    from dosirak import bentos
    from dosirak.deploy.backends import find_backend
    from dosirak.deploy.context import plan, write_context

    bento = bentos.get(tag)
    image_tags = list(tags) or default_image_tags(str(bento.tag))
    the_plan = plan(bento, vendor=vendor, platform=platform, report=report)
    if output is not None and not dry_run:
        context = write_context(the_plan, Path(output), report=report)
        return Containerized(the_plan, image_tags, context=context)
    engine = find_backend(backend)
    if dry_run:
        where = Path(output) if output is not None else Path("CONTEXT")
        command = engine.build_command(where, image_tags, build_args or {}, platform,
                                       Path("IIDFILE"))
        return Containerized(the_plan, image_tags, engine, command)
    with tempfile.TemporaryDirectory(prefix="dosirak-context-") as scratch:
        context = write_context(the_plan, Path(scratch) / "context", link=True, report=report)
        report(f"building with {engine.name}: {shlex.join(engine.build_command(context, image_tags, build_args or {}, platform, Path('IIDFILE')))}")  # noqa: E501
        image_id = engine.build(context, image_tags, build_args=build_args, platform=platform,
                                output=build_output)
    return Containerized(the_plan, image_tags, engine, None, image_id)


__all__ = ["Containerized", "containerize", "find_backend", "plan", "write_context"]
