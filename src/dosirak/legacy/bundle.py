"""Saved 0.x services: the bento ``save()`` builds, the 0.13 directory ``save_to_dir()`` writes,
and the one reader of both (``service_from_bundle``), which ``dosirak.load``, ``dosirak serve``
and ``dosirak import`` use.

A saved service is a bento built by ``dosirak.bentos.build`` from a staging directory holding:

    bento_service.py            the module that defines the class (and the local modules it imports)
    bentoml.yml                 BentoML 0.x's description: service, version, env, apis, artifacts
                                (each with the model-store tag it was saved as)
    dosirak_legacy_service.py   the entry the bento serves: ``svc = service_from_bundle(here)``
    web_static_content/         the @web_static_content files, if any

A BentoML 0.13 directory (``save_to_dir`` of either product) holds ``bentoml.yml`` at its root,
and the module and ``artifacts/`` (one file per artifact) under ``<ServiceName>/``.
"""

from __future__ import annotations

import ast
import datetime
import importlib.util
import inspect
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from dosirak.__about__ import __version__
from dosirak.exceptions import InvalidArgument
from dosirak.legacy.service import BentoService

BUNDLE_FILE = "bentoml.yml"
ENTRY_MODULE = "dosirak_legacy_service"
STATIC_DIR = "web_static_content"
ARTIFACTS_DIR = "artifacts"
_IMPORTS_BENTOML = re.compile(r"^\s*(?:from|import)\s+bentoml\b", re.MULTILINE)
_ENTRY = '''"""Serves the BentoML 0.x service saved beside this file (written by dosirak)."""

from pathlib import Path

from dosirak.legacy.bundle import service_from_bundle

svc = service_from_bundle(Path(__file__).parent)
'''


def bento_name(service_name: str) -> str:
    """The bento (and model-name prefix) of a 0.x service: ``IrisClassifier`` -> ``irisclassifier``
    (tags are lowercase; ``dosirak serve IrisClassifier:latest`` finds it either way)."""
    name = re.sub(r"[^a-z0-9._-]+", "_", service_name.lower()).strip("._-")
    return name[:50] or "bentoservice"


# ----- writing ----------------------------------------------------------------------------------


def _check_packed(svc: BentoService) -> None:
    empty = [name for name, artifact in svc.artifacts.items() if not artifact.packed]
    if empty:
        raise InvalidArgument(f"cannot save {svc.name}: artifact(s) {empty} are empty; pack "
                              f"them first (svc.pack({empty[0]!r}, model)), then save")


def _module_files(cls: type) -> tuple[str, Path, list[Path]]:
    """The class's module name, its file, and the local modules it imports (same directory)."""
    try:
        module_file = Path(inspect.getfile(cls)).resolve()
    except TypeError:
        raise InvalidArgument(f"{cls.__name__} is not defined in a file (a notebook or the "
                              "interactive prompt); define it in a .py module and import it, "
                              "so the saved service can import it again") from None
    module_name = cls.__module__
    if module_name == "__main__":
        module_name = module_file.stem
    found: list[Path] = []
    pending = [module_file]
    while pending:
        current = pending.pop()
        if current in found:
            continue
        found.append(current)
        tree = ast.parse(current.read_text(encoding="utf-8"), str(current))
        for node in ast.walk(tree):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module
                     and not node.level else [])
            for name in names:
                sibling = module_file.parent / f"{name.split('.')[0]}.py"
                if sibling.is_file() and sibling.resolve() not in found:
                    pending.append(sibling.resolve())
    return module_name, module_file, found


def describe(svc: BentoService, module_name: str, module_file: str,
             requirements: list[str], tags: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``bentoml.yml`` of ``svc`` (BentoML 0.13's fields, plus each artifact's model tag)."""
    apis = []
    for found in svc.api_descriptors():
        entry = {"name": found["name"], "route": found["route"], "docs": found["doc"],
                 "input_type": type(found["input"]).__name__,
                 "output_type": type(found["output"]).__name__,
                 "mb_max_batch_size": found["mb_max_batch_size"],
                 "mb_max_latency": found["mb_max_latency"], "batch": found["batch"]}
        if found["input"].config:
            entry["input_config"] = found["input"].config
        if found["output"].config:
            entry["output_config"] = found["output"].config
        apis.append(entry)
    artifacts = []
    for name, artifact in svc.artifacts.items():
        entry = {"name": name, "artifact_type": type(artifact).__name__,
                 "metadata": dict(artifact.metadata)}
        if tags is not None:
            entry["model"] = tags[name]
        artifacts.append(entry)
    metadata = {"created_at": datetime.datetime.now(datetime.UTC).isoformat(),
                "service_name": svc.name, "service_version": svc.version,
                "module_name": module_name, "module_file": module_file}
    if svc.web_static_content:
        metadata["web_static_content"] = STATIC_DIR
    return {"version": __version__, "kind": "BentoService", "metadata": metadata,
            "env": svc.env.to_dict(requirements), "apis": apis, "artifacts": artifacts}


def _requirements(svc: BentoService, module_file: Path) -> list[str]:
    from dosirak.frameworks import versions_of

    found = svc.env.requirements(module_file)
    names = {_name(r) for r in found}
    for artifact in svc.artifacts.values():
        for distribution, version in versions_of(*_DISTRIBUTIONS.get(artifact.adapter, ())
                                                 ).items():
            if _name(distribution) not in names:
                found.append(f"{distribution}=={version}")
                names.add(_name(distribution))
    return found


_DISTRIBUTIONS = {"dosirak.sklearn": ("scikit-learn",), "dosirak.keras": ("keras",),
                  "dosirak.pytorch": ("torch",), "dosirak.xgboost": ("xgboost-cpu", "xgboost"),
                  "dosirak.lightgbm": ("lightgbm",), "dosirak.tensorflow": ("tensorflow-cpu",),
                  "dosirak.onnx": ("onnx", "onnxruntime"),
                  "dosirak.transformers": ("transformers",)}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ @]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _copy_static(svc: BentoService, target: Path) -> None:
    if not svc.web_static_content:
        return
    source = Path(svc.web_static_content)
    if svc._bundle_path is not None and not source.is_dir():
        source = _static_of_bundle(svc._bundle_path, svc.name) or source
    if not source.is_dir():
        raise InvalidArgument(f"@web_static_content({svc.web_static_content!r}): no such "
                              f"directory (relative to {Path.cwd()}); fix the path")
    shutil.copytree(source, target / STATIC_DIR)


def save_to_store(svc: BentoService, version: str | None = None,
                  labels: dict[str, str] | None = None) -> str:
    """Save ``svc`` as a bento (artifacts as models); returns the bento's directory."""
    from dosirak.bentos import build

    _check_packed(svc)
    if version is not None:
        svc.set_version(version)
    module_name, module_file, files = _module_files(type(svc))
    name = bento_name(svc.name)
    bento_version = svc.version.lower()
    from dosirak.tag import Tag

    Tag(name, bento_version)  # a version the bento store refuses fails before anything is saved
    requirements = _requirements(svc, module_file)
    tags = {}
    for artifact_name, artifact in svc.artifacts.items():
        tags[artifact_name] = artifact.save_to_store(
            f"{name}-{artifact_name.lower()}",
            {"bentoml.service": svc.name, "bentoml.artifact": artifact_name,
             "bentoml.artifact_type": type(artifact).__name__})
    with tempfile.TemporaryDirectory(prefix="dosirak-legacy-") as staging:
        root = Path(staging)
        for file in files:
            shutil.copyfile(file, root / file.name)
        _copy_static(svc, root)
        description = describe(svc, module_name, module_file.name, requirements, tags)
        (root / BUNDLE_FILE).write_text(yaml.safe_dump(description, sort_keys=False), "utf-8")
        (root / f"{ENTRY_MODULE}.py").write_text(_ENTRY, encoding="utf-8")
        env = svc.env
        if env.conda:
            print(f"[dosirak] {svc.name}: conda options {sorted(env.conda)} are recorded in "
                  "bentoml.yml but not installed by the bento", file=sys.stderr)
        bentofile = {
            "service": f"{ENTRY_MODULE}:svc", "name": name,
            "description": (type(svc).__doc__ and inspect.cleandoc(type(svc).__doc__)) or None,
            "labels": {"bentoml.service": svc.name},
            "python": {"packages": requirements,
                       **({"index_url": env.pip_index_url} if env.pip_index_url else {}),
                       **({"extra_index_url": [env.pip_extra_index_url]}
                          if env.pip_extra_index_url else {})},
            "docker": {key: value for key, value in (("base_image", env.docker_base_image),
                                                     ("setup_script", _setup(env, root)))
                       if value},
            "models": [{"tag": tag} for tag in tags.values()],
        }
        (root / "bentofile.yaml").write_text(yaml.safe_dump(bentofile, sort_keys=False),
                                             encoding="utf-8")
        bento = build(root, version=bento_version, labels=labels, report=_report)
    print(f"[dosirak] BentoService bundle '{svc.name}:{svc.version}' saved to: {bento.path}",
          file=sys.stderr)
    return str(bento.path)


def _setup(env: Any, root: Path) -> str | None:
    """``setup_sh`` (a script's text or a path to one) as a file of the bento."""
    if not env.setup_sh:
        return None
    script = env.setup_sh
    path = Path(script)
    if "\n" not in script and path.is_file():
        script = path.read_text(encoding="utf-8")
    (root / "setup.sh").write_text(script, encoding="utf-8")
    return "setup.sh"


def _report(line: str) -> None:
    if "added the model" not in line:
        print(f"[dosirak] {line}", file=sys.stderr)


def save_to_dir(svc: BentoService, path: str, version: str | None = None) -> str:
    """Write ``svc`` into ``path`` in BentoML 0.13's layout; returns the path."""
    _check_packed(svc)
    if version is not None:
        svc.set_version(version)
    target = Path(path)
    module_dir = target / svc.name
    if module_dir.exists():
        raise InvalidArgument(f"{module_dir} exists already; save into an empty directory")
    module_name, module_file, files = _module_files(type(svc))
    requirements = _requirements(svc, module_file)
    artifacts_dir = module_dir / ARTIFACTS_DIR
    artifacts_dir.mkdir(parents=True)
    for artifact in svc.artifacts.values():
        artifact.save_files(artifacts_dir)
    for file in files:
        shutil.copyfile(file, module_dir / file.name)
    (module_dir / "__init__.py").write_text(
        f"from {module_name} import {type(svc).__name__}  # noqa\n", encoding="utf-8")
    _copy_static(svc, module_dir)
    description = yaml.safe_dump(describe(svc, module_name, module_file.name, requirements),
                                 sort_keys=False)
    for folder in (target, module_dir):
        (folder / BUNDLE_FILE).write_text(description, encoding="utf-8")
    (target / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements), "utf-8")
    (target / "README.md").write_text(f"# {svc.name}:{svc.version}\n\nA BentoService bundle "
                                      "saved by dosirak in BentoML 0.13's layout.\n", "utf-8")
    return str(target)


# ----- reading ----------------------------------------------------------------------------------


def read_description(directory: Path) -> dict[str, Any]:
    """The ``bentoml.yml`` of a bundle directory, checked to name a service and its module."""
    path = directory / BUNDLE_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidArgument(f"{directory} has no {BUNDLE_FILE}: it is not a saved BentoML "
                              "0.x service (save_to_dir writes one)") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise InvalidArgument(f"{path} cannot be read: {error}") from None
    metadata = data.get("metadata") if isinstance(data, dict) else None
    if not isinstance(metadata, dict) or not all(
            isinstance(metadata.get(key), str) for key in ("service_name", "module_name",
                                                           "module_file")):
        raise InvalidArgument(f"{path} has no metadata.service_name, module_name and "
                              "module_file; it is not a BentoML 0.x bundle description")
    if not metadata["service_name"].isidentifier():
        raise InvalidArgument(f"{path}: service_name {metadata['service_name']!r} is not a "
                              "Python class name")
    return data


def _inside(directory: Path, relative: str, what: str) -> Path:
    path = (directory / relative).resolve()
    if not path.is_relative_to(directory.resolve()) or Path(relative).is_absolute():
        raise InvalidArgument(f"{BUNDLE_FILE}: {what} {relative!r} points outside {directory}")
    return path


def _static_of_bundle(directory: Path, service_name: str) -> Path | None:
    for candidate in (directory / STATIC_DIR, directory / service_name / STATIC_DIR):
        if candidate.is_dir():
            return candidate
    return None


def load_class(directory: str | Path) -> tuple[type[BentoService], dict[str, Any]]:
    """Import the ``BentoService`` class of a bundle directory; returns it and ``bentoml.yml``.

    A module that imports ``bentoml`` gets dosirak's 0.x layer under that name (in this
    process only); a module that imports only dosirak leaves the name alone.
    """
    root = Path(directory).resolve()
    data = read_description(root)
    metadata = data["metadata"]
    service_name = metadata["service_name"]
    module_dir = root / service_name if (root / service_name).is_dir() else root
    module_file = _inside(module_dir, metadata["module_file"], "module_file")
    if not module_file.is_file():
        raise InvalidArgument(f"the bundle {root} has no module file {metadata['module_file']} "
                              f"(looked in {module_dir}); it is incomplete")
    module_name = metadata["module_name"]
    if not all(part.isidentifier() for part in module_name.split(".")):
        raise InvalidArgument(f"{BUNDLE_FILE}: module_name {module_name!r} is not a module name")
    if _IMPORTS_BENTOML.search(module_file.read_text(encoding="utf-8")):
        from dosirak.legacy.compat import resolve_bentoml

        resolve_bentoml()  # a module written for BentoML 0.13; dosirak's own saves need not
    for entry in (str(module_dir), str(root)):
        if entry in sys.path:
            sys.path.remove(entry)
    sys.path[:0] = [str(module_dir), str(root)]
    module = sys.modules.get(module_name)
    if module is None or Path(getattr(module, "__file__", "") or "").resolve() != module_file:
        spec = importlib.util.spec_from_file_location(module_name, module_file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
    cls = getattr(module, service_name, None)
    if not (isinstance(cls, type) and issubclass(cls, BentoService)):
        raise InvalidArgument(f"module {module_name} of the bundle {root} defines no "
                              f"BentoService class {service_name!r}")
    cls._bundle_path = root
    cls._bundle_version = str(metadata.get("service_version") or "") or None
    return cls, data


def load_artifacts(svc: BentoService, data: dict[str, Any], root: Path) -> BentoService:
    """Fill ``svc``'s artifacts: from the model store (tags in ``bentoml.yml``) or the bundle's
    ``artifacts/`` files."""
    recorded = {entry.get("name"): entry for entry in data.get("artifacts") or []
                if isinstance(entry, dict)}
    files = root / svc.name / ARTIFACTS_DIR
    if not files.is_dir():
        files = root / ARTIFACTS_DIR
    for name, artifact in svc.artifacts.items():
        entry = recorded.get(name)
        if entry is None:
            raise InvalidArgument(f"{svc.name} declares the artifact {name!r}, which the saved "
                                  f"bundle {root} does not hold; save the service again")
        if entry.get("model"):
            artifact.load_from_store(str(entry["model"]))
        else:
            artifact.load_files(files)
    return svc


def load(path: str | Path) -> BentoService:
    """The saved service at ``path`` (a bento's directory, as ``save()`` returns it, or a
    0.13 directory), with its artifacts loaded.

        >>> svc = dosirak.load(saved_path)
        >>> svc.artifacts["model"].metadata
    """
    root = _bundle_root(Path(path))
    cls, data = load_class(root)
    return load_artifacts(cls(), data, root)


def _bundle_root(path: Path) -> Path:
    if (path / BUNDLE_FILE).is_file():
        return path
    if (path / "src" / BUNDLE_FILE).is_file():  # a bento's directory
        return path / "src"
    raise InvalidArgument(f"{path} holds no saved BentoService ({BUNDLE_FILE} not found there "
                          "nor in its src/); give the path save() printed")


def service_from_bundle(directory: str | Path) -> Any:
    """The ``dosirak.Service`` serving the bundle at ``directory``; its artifacts load when the
    server starts (in each worker), not at import."""
    from dosirak.legacy.serving import to_service

    root = Path(directory).resolve()
    cls, data = load_class(root)
    from dosirak import models

    tags = [str(entry["model"]) for entry in data.get("artifacts") or []
            if isinstance(entry, dict) and entry.get("model")]
    static = _static_of_bundle(root, cls.__name__) if cls._web_static_content else None
    extra = {"bentoml": {key: data.get(key) for key in ("metadata", "apis", "artifacts", "env")}}
    return to_service(cls, lambda: load_artifacts(cls(), data, root),
                      models=[models.get(tag) for tag in tags], extra_metadata=extra,
                      static_content=static)


def is_bundle(directory: Path) -> bool:
    """Whether ``directory`` holds a saved 0.x service (its ``bentoml.yml``)."""
    return (directory / BUNDLE_FILE).is_file()
