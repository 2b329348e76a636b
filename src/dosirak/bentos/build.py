"""``dosirak build``: a bento from a build directory and its bentofile.

A bento is a version directory in the bento store:

    src/                          the included files of the build directory
    env/python/requirements.txt   what the bentofile asks for, plus dosirak
    env/python/requirements.lock.txt   every requirement pinned to the build environment
    env/python/wheels/            the bentofile's wheels
    README.md                     the description
    apis/openapi.yaml             the service's OpenAPI document
    bento.yaml                    tag, service, runners, APIs, models (tag and digest),
                                  environment, manifest

The service is imported in a child process (``service_info.py``) to read its name (the default
bento name), runners, APIs and the models it uses; models it uses that the bentofile does not list
are added. When the bentofile lists models and the service fails to import only for a missing
module (a framework not installed in CI), the build goes on with runners and APIs unknown.

Models are referenced by tag and digest, never copied: the model store keeps them. The digest
covers the sources, the models' digests and the environment, not the version nor the time, so
the same inputs give the same digest; not the runners and APIs either: they derive from the
sources and the environment, and are unknown when the build environment lacks a framework.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import platform
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dosirak.__about__ import __version__
from dosirak.bentos.store import Bento, bento_store
from dosirak.exceptions import AlreadyExists, InvalidArgument, ModelNotFound, ServiceImportFailed
from dosirak.store.manifest import Manifest, build_manifest
from dosirak.store.versioned_store import dump_yaml
from dosirak.tag import Tag, new_version

if TYPE_CHECKING:  # imported where used: `import dosirak.bentos` (a server's start) skips them
    from dosirak.bentos.bentofile import Bentofile
    from dosirak.bentos.service_info import ServiceImportFailure, ServiceInfo

API_VERSION = 1
README = "README.md"
PYTHON_DIR = "env/python"
OPENAPI = "apis/openapi.yaml"
_log = logging.getLogger("dosirak.bentos")


def build(directory: str | os.PathLike[str] = ".",
          bentofile: str | os.PathLike[str] | None = None, *,
          version: str | None = None, labels: Mapping[str, str] | None = None,
          report: Callable[[str], None] | None = None) -> Bento:
    """Build a bento from ``directory`` into the bento store and return it.

    ``bentofile`` defaults to ``directory/bentofile.yaml`` (or ``[tool.dosirak.bento]`` in its
    ``pyproject.toml``); ``version`` to a fresh one; ``labels`` are added to the bentofile's.
    ``report`` gets one line per thing the user should know (models added, APIs unknown);
    by default they are logged as warnings of the ``dosirak.bentos`` logger.

        >>> bento = dosirak.bentos.build("examples/iris")
        >>> bento.tag, bento.digest
    """
    from dosirak.bentos.bentofile import load_bentofile
    from dosirak.bentos.service_info import start_reading
    from dosirak.bentos.sources import select

    root = Path(directory)
    if not root.is_dir():
        raise InvalidArgument(f"build directory {root} is not a directory; give the folder that "
                              "holds the service and its bentofile.yaml")
    root = root.resolve()
    spec = load_bentofile(root, bentofile)
    if labels is not None and not isinstance(labels, Mapping):
        raise InvalidArgument(f"labels must be a dict of str -> str, got {type(labels).__name__}")
    if version is not None:
        Tag(spec.name or "bento", version)  # a bad version fails before the service is imported
    report = report or _log.warning
    models = [_model_entry(ref.tag, ref.alias) for ref in spec.models]
    files = select(root, spec)
    if not set(spec.service_files()) & set(files):
        raise InvalidArgument(f"the service {spec.service!r} would not be in the bento: none of "
                              f"{', '.join(spec.service_files())} is among the included files "
                              f"of {root}; add it to `include:` (or fix `service:`)")

    reading = start_reading(root, spec.service)  # runs while the files are copied
    store = bento_store()
    draft = None
    try:
        draft = store.new_draft()
        for relative in files:
            _copy(root / relative, draft / "src" / relative)
        environment = _write_environment(root, spec, draft)
        service = _service_section(spec, reading.result(), models, draft, report)
        service_name = service.pop("name")  # else bento.yaml's name would be the service's
        tag = Tag(spec.name or service_name or _name_of(root), version or new_version())
        description = _description(root, spec, tag)
        (draft / README).write_text(description, encoding="utf-8")
        manifest = build_manifest(draft)
        info = {
            "api_version": API_VERSION,
            "name": tag.name,
            "version": tag.version,
            "digest": bento_digest(manifest, models, environment),
            "service": spec.service,
            **service,
            "description": description,
            "labels": {**spec.labels, **{str(k): str(v) for k, v in (labels or {}).items()}},
            "creation_time": datetime.datetime.now(datetime.UTC).isoformat(),
            "dosirak_version": __version__,
            "python_version": platform.python_version(),
            "models": models,
            "environment": environment,
            "size": sum(entry["size"] for entry in manifest.values()),
            "manifest": manifest,
        }
        path = store.commit(draft, tag, info)
    except AlreadyExists:
        if draft is not None:
            store.discard(draft)
        raise AlreadyExists(f"bento {tag} exists already; build with another --version, or "
                            f"delete it first (`dosirak delete {tag}`)") from None
    except BaseException:
        reading.kill()
        if draft is not None:
            store.discard(draft)
        raise
    return Bento(tag, path, info)


def _service_section(spec: Bentofile, found: ServiceInfo | ServiceImportFailure,
                     models: list[dict[str, Any]], draft: Path,
                     report: Callable[[str], None]) -> dict[str, Any]:
    """What bento.yaml says of the service (``name`` is popped by the caller); writes
    apis/openapi.yaml and adds to ``models`` those the service uses but the bentofile omits."""
    from dosirak.bentos.service_info import ServiceImportFailure

    if isinstance(found, ServiceImportFailure):
        if found.missing_module is None or not spec.models:
            hint = ("; install it in the build environment, or list the service's models "
                    "under `models:` in the bentofile to build without it"
                    if found.missing_module else "; fix it and build again")
            raise ServiceImportFailed(f"cannot import the service {spec.service!r} to read its "
                                      f"APIs: {found}{hint}")
        reason = (f"the service could not be imported at build time ({found}); the OpenAPI "
                  "document will be produced on first serve")
        report(f"warning: runners and APIs unknown: {reason}")
        return {"name": None, "runners": None, "apis": None, "apis_unknown_reason": reason}
    listed = {entry["tag"] for entry in models}
    for text in found.models:
        if text not in listed:
            models.append({**_model_entry(text, None), "added": "used by the service, not "
                           "listed in the bentofile"})
            listed.add(text)
            report(f"added the model {text}: the service uses it and the bentofile does not "
                   "list it (list it under `models:` to say so)")
    (draft / OPENAPI).parent.mkdir(parents=True)
    (draft / OPENAPI).write_text(dump_yaml(found.openapi), encoding="utf-8")
    return {"name": found.name, "runners": found.runners, "apis": found.apis}


def bento_digest(manifest: Manifest, models: list[dict[str, Any]],
                 environment: dict[str, Any]) -> str:
    """sha256 over the files (paths and checksums, sorted; not the README, which describes, nor
    apis/, which derives from src/ and the environment and may be unknown at build time), the
    models' contents (name, alias and digest; not their versions) and the environment."""
    content = {
        "files": sorted((path, entry["sha256"]) for path, entry in manifest.items()
                        if path != README and not path.startswith("apis/")),
        "models": sorted((Tag.parse(m["tag"]).name, m["alias"] or "", m["digest"])
                         for m in models),
        "environment": environment,
    }
    return _sha256_of(content)


def manifest_digest(manifest: Manifest) -> str:
    """A stored model's digest: sha256 over its manifest (paths, sizes, checksums)."""
    return _sha256_of({path: [entry["size"], entry["sha256"]] for path, entry in manifest.items()})


def _sha256_of(content: Any) -> str:
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _name_of(root: Path) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "_", root.name.lower()).strip("._-")
    if not name:
        raise InvalidArgument(f"no bento name: the bentofile has no `name:` and the build "
                              f"directory's name {root.name!r} cannot be made one; add `name:`")
    return name[:63].rstrip("._-")


def _model_entry(text: str, alias: str | None) -> dict[str, Any]:
    from dosirak import models  # the model API loads the adapters' registry: only when needed

    try:
        model = models.get(text)
    except ModelNotFound as error:
        raise ModelNotFound(f"the bentofile lists the model {text}, which the model store does "
                            f"not hold: save or import it first ({error})") from None
    return {"tag": str(model.tag), "digest": manifest_digest(model.info.manifest),
            "alias": alias}


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def _description(root: Path, spec: Bentofile, tag: Tag) -> str:
    from dosirak.bentos.bentofile import DescriptionFile
    from dosirak.bentos.sources import inside

    if isinstance(spec.description, DescriptionFile):
        return inside(root, spec.description.file, "description file").read_text(encoding="utf-8")
    if spec.description:
        return spec.description
    return f"# {tag.name}\n\nA bento of the service `{spec.service}`, built by dosirak.\n"


# --- the Python environment ----------------------------------------------------------------------


def _write_environment(root: Path, spec: Bentofile, draft: Path) -> dict[str, Any]:
    """Write env/python/ into the draft; return the environment as bento.yaml records it."""
    from dosirak.bentos.sources import inside

    python = spec.python
    requirements = [*python.packages]
    if python.requirements_txt:
        text = inside(root, python.requirements_txt, "requirements_txt").read_text("utf-8")
        requirements += [line.split(" #")[0].strip() for line in text.splitlines()
                         if line.strip() and not line.lstrip().startswith(("#", "-"))]
    requirements.append(f"dosirak=={__version__}")
    folder = draft / PYTHON_DIR
    folder.mkdir(parents=True)
    (folder / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements), "utf-8")
    lock = lock_requirements(requirements) if python.lock else None
    if lock is not None:
        (folder / "requirements.lock.txt").write_text("".join(f"{r}\n" for r in lock), "utf-8")
    wheels = []
    for wheel in python.wheels:
        source = inside(root, wheel, "wheel")
        _copy(source, folder / "wheels" / source.name)
        wheels.append(f"wheels/{source.name}")
    return {
        "python": {
            "version": platform.python_version(),
            "requirements": requirements,
            "lock": lock,
            "index_url": python.index_url,
            "extra_index_url": python.extra_index_url,
            "find_links": python.find_links,
            "wheels": wheels,
        },
        "docker": spec.docker.model_dump(),
        "envs": [env.model_dump() for env in spec.envs],
    }


def lock_requirements(requirements: list[str]) -> list[str]:
    """Every requirement and its dependencies, pinned to the installed versions.

    Read from the build environment's installed distributions (no network, no resolver): the
    same environment always gives the same lock. A requirement not installed is kept as
    written, marked so, and its dependencies are unknown.
    """
    import importlib.metadata

    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    pinned: dict[str, str] = {}
    missing: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    pending: list[tuple[str, frozenset[str]]] = [(text, frozenset({""})) for text in requirements]
    while pending:
        text, parent_extras = pending.pop()
        try:
            requirement = Requirement(text)
        except InvalidRequirement as error:
            raise InvalidArgument(f"python requirement {text!r} is not valid: {error}; write it "
                                  "as pip does, e.g. 'scikit-learn>=1.3'") from None
        marker = requirement.marker
        if marker is not None and not any(marker.evaluate({"extra": extra})
                                          for extra in parent_extras):
            continue
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            distribution = importlib.metadata.distribution(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.add(f"{requirement}  # not installed in the build environment")
            continue
        pinned[name] = distribution.version
        extras = frozenset({"", *requirement.extras})
        pending.extend((dependency, extras) for dependency in distribution.requires or [])
    return sorted(f"{name}=={pinned[name]}" for name in pinned) + sorted(missing)
