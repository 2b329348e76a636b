"""dosirak: turn trained machine-learning models into fast, reliable prediction services.

    >>> import dosirak
    >>> dosirak.sklearn.save_model("iris_clf", clf)
    >>> model = dosirak.models.get("iris_clf:latest")

Framework adapters (``dosirak.sklearn``, ``dosirak.pytorch`` ...) and heavier layers are imported
on first use, so ``import dosirak`` loads no ML framework.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dosirak.__about__ import __version__
from dosirak.tag import Tag

if TYPE_CHECKING:  # what a type checker sees of the lazy names below, one by one
    from dosirak import (
        adapters,
        bentos,
        client,
        exceptions,
        generic,
        io,
        keras,
        lightgbm,
        metrics,
        models,
        monitoring,
        onnx,
        picklable_model,
        pytorch,
        runner,
        sklearn,
        spark,
        tensorflow,
        transformers,
        validators,
        xgboost,
    )
    from dosirak.client import AsyncHTTPClient, SyncHTTPClient
    from dosirak.context import Context
    from dosirak.legacy import BentoService, env, load, ver, web_static_content
    from dosirak.legacy.service import artifacts
    from dosirak.models import Model
    from dosirak.monitoring import monitor
    from dosirak.runner import Runnable, Runner
    from dosirak.serve.background import HTTPServer
    from dosirak.service_class import api, service
    from dosirak.services import Service

_SUBMODULES = {
    "exceptions", "models", "sklearn", "pytorch", "keras", "tensorflow", "xgboost", "lightgbm",
    "onnx", "transformers", "picklable_model", "runner", "io", "client", "generic", "spark",
    "bentos", "adapters", "metrics", "monitoring", "validators",
}
_ATTRIBUTES = {
    "Model": "dosirak.models",
    "Runner": "dosirak.runner",
    "Runnable": "dosirak.runner",
    "Service": "dosirak.services",
    "service": "dosirak.service_class",
    "api": "dosirak.service_class",
    "SyncHTTPClient": "dosirak.client",
    "AsyncHTTPClient": "dosirak.client",
    "Context": "dosirak.context",
    "monitor": "dosirak.monitoring",
    "HTTPServer": "dosirak.serve.background",
    # BentoML 0.x's API (seeds 001 and 004); ``api`` serves both styles (service_class.api)
    "BentoService": "dosirak.legacy",
    "env": "dosirak.legacy",
    "artifacts": "dosirak.legacy",
    "web_static_content": "dosirak.legacy",
    "ver": "dosirak.legacy",
    "load": "dosirak.legacy",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"dosirak.{name}")
    if name in _ATTRIBUTES:
        return getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    raise AttributeError(f"module 'dosirak' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES | set(_ATTRIBUTES))


__all__ = [
    "AsyncHTTPClient", "BentoService", "Context", "HTTPServer", "Model", "Runnable", "Runner",
    "Service", "SyncHTTPClient", "Tag", "__version__", "adapters", "api", "artifacts", "bentos",
    "client", "env", "exceptions", "generic", "io", "keras", "lightgbm", "load", "metrics",
    "models", "monitor", "monitoring", "onnx", "picklable_model", "pytorch", "runner", "service",
    "sklearn", "spark", "tensorflow", "transformers", "validators", "ver", "web_static_content",
    "xgboost",
]
