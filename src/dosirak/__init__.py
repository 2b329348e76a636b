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

if TYPE_CHECKING:
    from dosirak import exceptions, models
    from dosirak.models import Model

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


__all__ = ["Model", "Tag", "__version__", "exceptions", "models"]
