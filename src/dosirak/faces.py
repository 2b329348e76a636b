"""Names a lower module shows but a higher layer makes, found at first use.

Imports point down the layers (ARCHITECTURE.md), yet a few public names belong where a user looks
for them, below the layer that makes them: ``svc.asgi_app`` (``services.py``; the server builds
the app) and BentoML 0.x's ``SklearnModelArtifact`` and its kin at their 0.x path
``dosirak.frameworks.sklearn`` (``dosirak.legacy`` makes them). The lower module asks here, by its
own name and the attribute's; ``dosirak/__init__.py``, which Python runs before any module of the
package and which may import every layer, says where each is made (``provide``). So no module
imports a layer above its own, and each name works in any process, whatever it imported first.

    >>> provide("dosirak.services", "create_app", lambda: create_app)    # in dosirak/__init__.py
    >>> get("dosirak.services", "create_app")                            # in services.py
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_MAKERS: dict[tuple[str, str], Callable[[], Any]] = {}


def provide(module: str, name: str, make: Callable[[], Any]) -> None:
    """Say that ``name`` of ``module`` is what ``make()`` returns (called at each use, so the
    layer that makes it is imported only when the name is used)."""
    _MAKERS[module, name] = make


def get(module: str, name: str) -> Any:
    """``name`` of ``module``, made by the layer ``provide`` named; AttributeError if none did."""
    make = _MAKERS.get((module, name))
    if make is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    return make()


def module_getattr(module: str) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``module``: the names provided for it, else AttributeError.

        >>> __getattr__ = module_getattr(__name__)
    """

    def __getattr__(name: str) -> Any:
        return get(module, name)

    return __getattr__
