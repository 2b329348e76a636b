"""What ``dosirak serve TARGET`` serves: find the service a target names and import it.

    >>> load_service("service:svc")             # a module importable from the current directory
    >>> load_service("examples/iris/service.py:svc")
    >>> load_service("examples/iris")           # a directory: its bentofile.yaml or service.py
    >>> load_service("service")                 # no ``:name``: the one Service the module defines
    >>> load_service("iris_classifier:latest")  # a bento in the bento store, by tag
    >>> load_service("saved/IrisClassifier")     # a directory BentoML 0.13 saved (bentoml.yml)

A path that exists or a module that can be found wins; otherwise a target that reads as a tag
names a bento, whose service is imported from the bento's own ``src/`` with the current
directory taken off ``sys.path`` (the user's working copy must never stand in for the bento's
code), once the models it was built with are checked to be in the model store.

A file's directory goes first on ``sys.path`` and the file is imported under its own module name,
so its sibling modules import as they would when run from there, and runnables defined in it can
be rebuilt by name in runner worker processes. Every failure is a ``ServeTargetError`` saying what
was tried, why it failed, and how to write the target.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dosirak.exceptions import InvalidArgument

SERVICE_FILE = "service.py"
BENTOFILE = "bentofile.yaml"
LEGACY_FILE = "bentoml.yml"  # the description of a BentoML 0.x saved bundle
_FORMS = ("module:svc (importable from the current directory), path/to/file.py:svc, a "
          "directory holding service.py, or a bento's tag (name:version)")


class ServeTargetError(InvalidArgument):
    """A serve target names no service: a missing file or module, an import error, no Service."""


@dataclass(frozen=True)
class Target:
    """A parsed target: the module to import (with the directory to import it from) and the
    attribute holding the service (``None``: find the one Service in the module)."""

    text: str
    module: str
    directory: Path
    attribute: str | None
    file: Path | None = None
    bento: str | None = None  # the full tag ``name:version`` of a bento target
    models: tuple[str, ...] = ()  # a bento's models (full tags): what their names mean in it
    legacy: bool = False  # a BentoML 0.x service (bentoml.yml): a bento's or a 0.13 directory

    @property
    def watch_root(self) -> Path:
        """The directory whose sources ``--reload`` watches."""
        return self.directory


def parse_target(text: str, cwd: str | os.PathLike[str] | None = None) -> Target:
    """Split ``text`` into what to import and from where, checking that files exist."""
    if not isinstance(text, str) or not text.strip():
        raise ServeTargetError(f"no serve target given; write one of: {_FORMS}")
    base = Path(cwd or os.getcwd())
    bento = _bento_target(text, base)
    if bento is not None:
        return bento
    location, attribute = _split_attribute(text)
    path = base / location
    looks_like_path = location.endswith(".py") or os.sep in location or "/" in location \
        or location in (".", "..") or path.is_dir()
    if not looks_like_path:
        if not all(part.isidentifier() for part in location.split(".")):
            raise ServeTargetError(f"serve target {text!r}: {location!r} is neither a file, a "
                                   f"directory nor a module name; write one of: {_FORMS}")
        return Target(text, location, base, attribute)
    if path.is_dir():
        if attribute is not None:
            raise ServeTargetError(f"serve target {text!r}: {location!r} is a directory, which "
                                   "cannot take ':name'; name the file instead "
                                   f"({location.rstrip('/')}/{SERVICE_FILE}:{attribute})")
        return _directory_target(text, path.resolve())
    if not location.endswith(".py"):
        raise ServeTargetError(f"serve target {text!r}: there is no file or directory "
                               f"{path}; write one of: {_FORMS}")
    if not path.is_file():
        raise ServeTargetError(f"serve target {text!r}: the file {path} does not exist; check "
                               "the path (it is relative to the current directory, "
                               f"{base})")
    file = path.resolve()
    module = file.stem
    if not module.isidentifier():
        raise ServeTargetError(f"serve target {text!r}: {file.name} cannot be imported as a "
                               "module (its name must be a Python identifier); rename it, e.g. "
                               f"{_identifier(module)}.py")
    return Target(text, module, file.parent, attribute, file)


def load_service(target: str | Target) -> Any:
    """Import the target and return its ``dosirak.Service``."""
    from dosirak.services import Service

    parsed = parse_target(target) if isinstance(target, str) else target
    if parsed.legacy and parsed.bento is None:  # a directory BentoML 0.13 saved
        from dosirak.legacy.bundle import service_from_bundle

        return service_from_bundle(parsed.directory)
    module = import_target_module(parsed)
    if parsed.attribute is not None:
        value: Any = module
        for part in parsed.attribute.split("."):
            if not hasattr(value, part):
                found = _services_in(module)
                hint = (f"; it defines {', '.join(found)}: serve {parsed.module}:{found[0]}"
                        if found else "; it defines no dosirak.Service")
                raise ServeTargetError(f"serve target {parsed.text!r}: module {parsed.module!r} "
                                       f"has no attribute {parsed.attribute!r}{hint}")
            value = getattr(value, part)
        if not isinstance(value, Service):
            raise ServeTargetError(f"serve target {parsed.text!r}: {parsed.attribute!r} is a "
                                   f"{type(value).__name__}, not a dosirak.Service; point at "
                                   "the object made by dosirak.Service(...) or @dosirak.service")
        return value
    found = _services_in(module)
    if len(found) == 1:
        return getattr(module, found[0])
    if not found:
        raise ServeTargetError(f"serve target {parsed.text!r}: module {parsed.module!r} defines "
                               "no dosirak.Service; create one (svc = dosirak.Service(...)) or "
                               "name it (module:svc)")
    raise ServeTargetError(f"serve target {parsed.text!r}: module {parsed.module!r} defines "
                           f"several services ({', '.join(found)}); name one, e.g. "
                           f"{parsed.module}:{found[0]}")


def import_target_module(target: Target) -> Any:
    """Import the target's module from its directory, turning import failures into clear errors.
    """
    directory = str(target.directory)
    if target.bento is not None:  # the bento's code only, never a same-named working copy
        from dosirak.bentos.store import hold

        hold(target.bento)  # `dosirak delete` refuses it while this process lives
        sys.path[:] = [entry for entry in sys.path if entry not in ("", os.getcwd())]
        from dosirak.models import pin_versions

        pin_versions(target.models)  # its models too, whatever was saved under their names since
    if directory in sys.path:
        sys.path.remove(directory)
    sys.path.insert(0, directory)
    if target.file is not None:
        loaded = sys.modules.get(target.module)
        origin = getattr(loaded, "__file__", None)
        if loaded is not None and origin and Path(origin).resolve() != target.file:
            raise ServeTargetError(f"serve target {target.text!r}: the module name "
                                   f"{target.module!r} is taken by {origin}; rename "
                                   f"{target.file.name}")
    try:
        return importlib.import_module(target.module)
    except ModuleNotFoundError as error:
        if error.name is not None and (target.module == error.name or
                                       target.module.startswith(error.name + ".")):
            raise ServeTargetError(f"serve target {target.text!r}: no module named "
                                   f"{target.module!r} in {directory} or on the Python path; run "
                                   "dosirak serve from the directory that holds it, or give its "
                                   f"path ({_FORMS})") from None
        raise ServeTargetError(_import_failure(target, error)) from error
    except SyntaxError as error:
        where = f"{error.filename}, line {error.lineno}" if error.filename else "the source"
        raise ServeTargetError(f"serve target {target.text!r}: {where} has a syntax error: "
                               f"{error.msg}; fix it and serve again") from None
    except Exception as error:
        raise ServeTargetError(_import_failure(target, error)) from error


def _import_failure(target: Target, error: BaseException) -> str:
    from dosirak.exceptions import DosirakError

    # Point at the line of the user's own code that failed, not at library internals.
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if "importlib" not in frame.filename]
    own = [frame for frame in frames
           if Path(frame.filename).resolve().is_relative_to(target.directory)]
    frame = (own or frames)[-1] if own or frames else None
    where = f"{Path(frame.filename).name}, line {frame.lineno}: " if frame else ""
    if isinstance(error, DosirakError):  # our message already says what to do
        return (f"serve target {target.text!r}: importing module {target.module!r} failed "
                f"({where}{type(error).__name__}): {error}")
    return (f"serve target {target.text!r}: importing module {target.module!r} raised "
            f"{type(error).__name__}: {error} ({where.rstrip(': ')}); the error comes from the "
            "service's code: fix it and serve again")


def _split_attribute(text: str) -> tuple[str, str | None]:
    location, colon, attribute = text.rpartition(":")
    if not colon or (len(location) == 1 and location.isalpha()):  # "C:..." is a drive, not a name
        return text, None
    if not attribute or not all(part.isidentifier() for part in attribute.split(".")):
        raise ServeTargetError(f"serve target {text!r}: {attribute!r} after ':' must be the "
                               "name of the service object, e.g. service.py:svc")
    return location, attribute


def _directory_target(text: str, directory: Path) -> Target:
    if (directory / LEGACY_FILE).is_file():
        return Target(text, "", directory, None, legacy=True)
    bentofile = directory / BENTOFILE
    if bentofile.is_file():
        service = _bentofile_service(bentofile)
        if service:
            return _service_target(text, directory, service)
    file = directory / SERVICE_FILE
    if not file.is_file():
        raise ServeTargetError(f"serve target {text!r}: the directory {directory} has neither "
                               f"{SERVICE_FILE} nor a {BENTOFILE} naming a service; give the "
                               "file (path/to/file.py:svc) or add service.py")
    return Target(text, file.stem, directory, None, file.resolve())


def _service_target(text: str, directory: Path, service: str,
                    bento: str | None = None) -> Target:
    """The target of a bentofile's ``service`` ("module:attr" or "file.py:attr") in
    ``directory``."""
    location, attribute = _split_attribute(service)
    if location.endswith(".py"):
        file = (directory / location).resolve()
        return Target(text, file.stem, file.parent, attribute, file, bento)
    return Target(text, location, directory, attribute, None, bento)


def _bento_target(text: str, base: Path) -> Target | None:
    """The bento ``text`` names, or None when it reads as a path or a findable module (those
    win). A tag that is neither a module nor a stored bento is an error naming both readings."""

    location = text.partition(":")[0]
    if location.endswith(".py") or "/" in location or os.sep in location \
            or (base / location).exists() or _module_exists(location, base):
        return None
    from dosirak.bentos.serving import SOURCE_DIR, check_models
    from dosirak.bentos.store import bento_store, bento_tag, get

    try:
        tag = bento_tag(text)
    except InvalidArgument:
        return None  # not a tag either: the module reading reports what is wrong
    from dosirak.exceptions import BentoNotFound

    try:
        bento = get(tag)
    except BentoNotFound:
        raise ServeTargetError(
            f"serve target {text!r}: no module named {location!r} in {base} or on the Python "
            f"path, and no bento {tag} in the bento store ({bento_store().root}); run dosirak "
            "serve from the directory that holds the module, or give its path, or build the "
            "bento (`dosirak build DIR`; `dosirak list` shows the bentos stored)") from None
    check_models(bento)
    target = _service_target(text, bento.path / SOURCE_DIR, bento.service, str(bento.tag))
    return dataclasses.replace(target, models=tuple(model["tag"] for model in bento.models),
                               legacy=(bento.path / SOURCE_DIR / LEGACY_FILE).is_file())


def _module_exists(location: str, base: Path) -> bool:
    """Whether the top package of ``location`` can be found in ``base`` or on ``sys.path``,
    without importing anything."""
    import importlib.machinery
    import importlib.util

    top = location.split(".")[0]
    if not top.isidentifier():
        return False
    try:
        return (importlib.machinery.PathFinder.find_spec(top, [str(base)]) is not None
                or importlib.util.find_spec(top) is not None)
    except (ImportError, ValueError):
        return True  # something by that name is there: let the import report it


def _bentofile_service(path: Path) -> str | None:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ServeTargetError(f"{path} cannot be read as YAML: {error}") from None
    service = data.get("service") if isinstance(data, dict) else None
    if service is not None and not isinstance(service, str):
        raise ServeTargetError(f"{path}: 'service' must be a string such as 'service:svc', got "
                               f"{service!r}")
    return service


def _services_in(module: Any) -> list[str]:
    from dosirak.services import Service

    return [name for name, value in vars(module).items()
            if isinstance(value, Service) and not name.startswith("_")]


def _identifier(name: str) -> str:
    cleaned = "".join(char if char.isalnum() or char == "_" else "_" for char in name)
    return cleaned if cleaned and not cleaned[0].isdigit() else f"service_{cleaned}"
