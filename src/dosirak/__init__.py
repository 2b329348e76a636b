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

from dosirak import faces
from dosirak.__about__ import __version__
from dosirak.tag import Tag

if TYPE_CHECKING:  # what a type checker sees of the lazy names below, one by one
    from collections.abc import Callable

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
    from dosirak.api_styles import api
    from dosirak.client import AsyncHTTPClient, SyncHTTPClient
    from dosirak.context import Context
    from dosirak.legacy import BentoService, env, load, ver, web_static_content
    from dosirak.legacy.service import artifacts
    from dosirak.models import Model
    from dosirak.monitoring import monitor
    from dosirak.runner import Runnable, Runner
    from dosirak.serve.background import HTTPServer
    from dosirak.service_class import service
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
    "api": "dosirak.api_styles",
    "SyncHTTPClient": "dosirak.client",
    "AsyncHTTPClient": "dosirak.client",
    "Context": "dosirak.context",
    "monitor": "dosirak.monitoring",
    "HTTPServer": "dosirak.serve.background",
    # BentoML 0.x's API (seeds 001 and 004); ``api`` serves both styles (api_styles.py)
    "BentoService": "dosirak.legacy",
    "env": "dosirak.legacy",
    "artifacts": "dosirak.legacy",
    "web_static_content": "dosirak.legacy",
    "ver": "dosirak.legacy",
    "load": "dosirak.legacy",
}


# Names lower modules show but higher layers make (dosirak.faces): this module runs before any
# other of the package and may import every layer, so it says where each is made.
_ZERO_X_ARTIFACTS = {  # BentoML 0.x's artifact classes at their 0.x path, dosirak.frameworks.*
    "keras": "KerasModelArtifact", "lightgbm": "LightGBMModelArtifact",
    "onnx": "OnnxModelArtifact", "pytorch": "PytorchModelArtifact",
    "sklearn": "SklearnModelArtifact", "tensorflow": "TensorflowSavedModelArtifact",
    "transformers": "TransformersModelArtifact", "xgboost": "XgboostModelArtifact",
}


def _zero_x_artifact(name: str) -> Callable[[], Any]:
    def make() -> Any:
        from dosirak.legacy import framework_artifacts

        return getattr(framework_artifacts, name)

    return make


def _server_create_app() -> Any:
    from dosirak.server.app import create_app

    return create_app


for _framework, _artifact in _ZERO_X_ARTIFACTS.items():
    faces.provide(f"dosirak.frameworks.{_framework}", _artifact, _zero_x_artifact(_artifact))
del _framework, _artifact
faces.provide("dosirak.services", "create_app", _server_create_app)  # svc.asgi_app


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
