"""Local modules a model's pickle needs, stored with the model and put back on import.

    >>> import my_features                       # a module of the project, not installed
    >>> dosirak.sklearn.save_model("clf", pipeline, external_modules=[my_features])

A pickle names the classes it holds by module: an estimator using ``my_features.Scaler`` cannot
be loaded where ``my_features`` is not importable (a bento, another machine, a worker started
elsewhere). ``save_model(..., external_modules=[...])`` copies each module's source (the whole
top-level package for a module inside one) into the model under ``external_modules/``; loading
the model appends that directory to ``sys.path`` first, so the pickle finds them. Modules that
are installed (site-packages, the standard library) are refused: list those as the bento's
Python packages instead.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import sysconfig
import types
from collections.abc import Iterable
from pathlib import Path

from dosirak.exceptions import InvalidArgument

DIRECTORY = "external_modules"


def store(directory: Path, modules: Iterable[types.ModuleType]) -> list[str]:
    """Copy the sources of ``modules`` into ``directory/external_modules``; their names."""
    target = directory / DIRECTORY
    names: list[str] = []
    for module in modules:
        if not isinstance(module, types.ModuleType):
            raise InvalidArgument(f"external_modules takes imported modules (import my_module; "
                                  f"external_modules=[my_module]), got {module!r}")
        root = importlib.import_module(module.__name__.partition(".")[0])
        source = _source_of(root)
        if root.__name__ in names:
            continue
        target.mkdir(exist_ok=True)
        if source.name == "__init__.py":
            shutil.copytree(source.parent, target / root.__name__,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, target / source.name)
        names.append(root.__name__)
    return names


def put_on_path(model_path: Path) -> None:
    """Make a model's stored modules importable (appended: an installed copy wins)."""
    directory = str(model_path / DIRECTORY)
    if directory not in sys.path:
        sys.path.append(directory)


def _source_of(module: types.ModuleType) -> Path:
    file = getattr(module, "__file__", None)
    if not file or not file.endswith(".py"):
        raise InvalidArgument(f"external module {module.__name__!r} has no Python source to "
                              "store (a built-in, compiled or namespace module)")
    path = Path(file).resolve()
    installed = {Path(sysconfig.get_paths()[key]).resolve()
                 for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    if any(path.is_relative_to(place) for place in installed):
        raise InvalidArgument(f"module {module.__name__!r} is installed ({path}); "
                              "external_modules is for the project's own modules: list "
                              "installed packages as the bento's python packages instead")
    return path
