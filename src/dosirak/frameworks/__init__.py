"""Framework adapters: how each ML framework's models are saved into the store and loaded back.

Each adapter module (``dosirak.frameworks.sklearn`` ...) exposes ``save_model``, ``load_model``
and ``get``, re-exported as ``dosirak.<framework>``. Frameworks are imported only when a model of
theirs is saved or loaded, so ``import dosirak`` stays light.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from typing import Any

from dosirak.exceptions import InvalidArgument
from dosirak.models import Model, get
from dosirak.tag import Tag


def get_model(module: str, tag: Tag | str | Model) -> Model:
    """``models.get`` that also checks the model was saved by the adapter ``module``."""
    model = get(tag)
    if model.info.module != module:
        raise InvalidArgument(
            f"model {model.tag} was saved with {model.info.module}, not {module}: "
            f"load it with {model.info.module}.load_model({str(model.tag)!r})"
        )
    return model


def versions_of(*distributions: str) -> dict[str, str]:
    """Installed versions of the given distributions, for the model's context."""
    found = {}
    for name in distributions:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def methods_present(obj: Any, candidates: Iterable[str], options: dict[str, Any]) -> dict[str, Any]:
    """Default signatures: the candidate methods the object actually has."""
    return {name: dict(options) for name in candidates if callable(getattr(obj, name, None))}
