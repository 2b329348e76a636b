"""``import bentoml`` inside a process serving a BentoML 0.13 bundle: dosirak's 0.x layer.

    >>> resolve_bentoml()
    >>> import bentoml                      # dosirak.legacy: env, artifacts, api, BentoService
    >>> from bentoml.adapters import DataframeInput           # dosirak.adapters
    >>> from bentoml.frameworks.sklearn import SklearnModelArtifact

Only the processes that load a 0.13 bundle call ``resolve_bentoml`` (``dosirak serve PATH``,
``dosirak import PATH``, ``dosirak.load``): the name is never taken in any other process, and a
real ``bentoml`` installed beside dosirak stays untouched elsewhere. Each ``bentoml.X`` is a thin
module forwarding to ``dosirak.X``, so dosirak's own modules keep their names and specs.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any

_ROOT = "bentoml"


class _Forward(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``bentoml`` and ``bentoml.*``; loads each as a module forwarding to dosirak's."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _ROOT and not fullname.startswith(_ROOT + "."):
            return None
        real = _target(fullname)
        try:
            found = importlib.util.find_spec(real)
        except ModuleNotFoundError:
            found = None
        if found is None:
            return None
        spec = importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        real = importlib.import_module(_target(spec.name))
        module = types.ModuleType(spec.name, real.__doc__)
        module.__getattr__ = lambda name: _attribute(real, spec.name, name)  # type: ignore[attr-defined]
        module.__dict__["__all__"] = getattr(real, "__all__", [n for n in dir(real)
                                                               if not n.startswith("_")])
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        module.__path__ = []  # submodules are found by this finder, by name


def _target(fullname: str) -> str:
    return "dosirak.legacy" if fullname == _ROOT else "dosirak" + fullname[len(_ROOT):]


def _attribute(real: types.ModuleType, name: str, attribute: str) -> Any:
    try:
        return getattr(real, attribute)
    except AttributeError:
        raise AttributeError(f"module {name!r} (dosirak's 0.x layer, {real.__name__}) has no "
                             f"attribute {attribute!r}") from None


def resolve_bentoml() -> None:
    """Make ``bentoml`` mean dosirak's 0.x layer in this process (idempotent)."""
    if any(isinstance(finder, _Forward) for finder in sys.meta_path):
        return
    for name in [n for n in sys.modules if n == _ROOT or n.startswith(_ROOT + ".")]:
        del sys.modules[name]  # a real bentoml imported before: this process now means ours
    sys.meta_path.insert(0, _Forward())
