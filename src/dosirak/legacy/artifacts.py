"""Artifacts of 0.x services: the models a ``BentoService`` packs, kept in the model store.

    >>> @artifacts([SklearnModelArtifact("model"), JSONArtifact("labels")])
    ... class IrisClassifier(BentoService): ...
    >>> svc = IrisClassifier().pack("model", clf).pack("labels", {"0": "setosa"})
    >>> svc.artifacts.model            # the estimator itself, inside the APIs
    >>> svc.artifacts["model"].metadata

Each artifact class names the framework adapter (``dosirak.sklearn`` ...) that saves its object
into the model store when the service is saved and loads it back when the service is served:
an artifact is a stored model like any other (``dosirak models list`` shows it). Artifacts also
read and write the files of BentoML 0.13's saved bundles (``artifacts/NAME.pkl`` ...), which
``save_to_dir`` writes and ``dosirak import`` of a 0.13 directory reads.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from dosirak.exceptions import DosirakError, InvalidArgument

_log = logging.getLogger("dosirak.legacy")


class ArtifactNotReady(DosirakError):
    """An artifact was used (or saved) before anything was packed into it."""

    status = 500


class BentoServiceArtifact:
    """One named model of a service; subclasses say which framework stores it.

    ``adapter`` is the dosirak framework module that saves it into the model store;
    ``accepts(obj)`` checks the kind of object ``pack`` takes, ``kind`` says it in errors.
    """

    adapter = "dosirak.picklable_model"
    kind = "any picklable Python object"
    #: The file (or directory) suffix of the artifact in a 0.13 bundle's ``artifacts/``.
    suffix = ".pkl"

    def __new__(cls, *args: Any, **kwargs: Any) -> BentoServiceArtifact:
        artifact = super().__new__(cls)
        artifact._arguments = (args, kwargs)  # for fresh copies per service instance
        return artifact

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise InvalidArgument(f"artifact name {name!r} must be a Python identifier (letters, "
                                  "digits and '_', not starting with a digit), since the APIs "
                                  "read it as self.artifacts.NAME")
        self.name = name
        self._object: Any = None
        self._ready = False
        self.metadata: dict[str, Any] = {}
        #: The model-store tag the artifact was saved as or loaded from.
        self.tag: str | None = None

    def copy(self) -> BentoServiceArtifact:
        """A fresh, empty artifact declared the same way."""
        args, kwargs = self._arguments
        return type(self)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # ----- packing and using ------------------------------------------------------------------

    @property
    def packed(self) -> bool:
        return self._ready

    is_ready = loaded = packed

    def accepts(self, obj: Any) -> bool:
        """Whether ``obj`` is of the kind this artifact stores."""
        return True

    def pack(self, obj: Any, metadata: dict[str, Any] | None = None) -> BentoServiceArtifact:
        """Put ``obj`` in this artifact, with optional ``metadata`` (a dict shown by /metadata,
        ``dosirak get`` and ``artifacts[NAME].metadata``)."""
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidArgument(f"metadata of artifact {self.name!r} must be a dict, got "
                                  f"{type(metadata).__name__}")
        if not self.accepts(obj):
            raise InvalidArgument(
                f"{type(self).__name__}({self.name!r}) stores {self.kind}, got "
                f"{type(obj).__module__}.{type(obj).__name__}; pack an object of that kind, or "
                "declare the artifact with the class made for this object (PickleArtifact "
                "takes any picklable object)")
        self._object = obj
        self._ready = True
        if metadata is not None:
            self.metadata = dict(metadata)
        return self

    def get(self) -> Any:
        """The packed (or loaded) object."""
        if not self._ready:
            raise ArtifactNotReady(f"artifact {self.name!r} is empty: pack it first "
                                   f"(svc.pack({self.name!r}, obj)) or load the saved service "
                                   "(dosirak.load(path))")
        return self._object

    # ----- the model store --------------------------------------------------------------------

    def _adapter(self) -> Any:
        return importlib.import_module(self.adapter)

    def save_to_store(self, name: str, labels: dict[str, str]) -> str:
        """Save the packed object as model ``name``; returns its full tag."""
        model = self._adapter().save_model(name, self._to_model(self.get()), labels=labels,
                                           metadata=self.metadata)
        self.tag = str(model.tag)
        return self.tag

    def load_from_store(self, tag: str) -> BentoServiceArtifact:
        """Load the object saved under ``tag`` (with the metadata it was saved with)."""
        from dosirak import models

        model = models.get(tag)
        if model.info.module != self.adapter:
            raise InvalidArgument(f"artifact {self.name!r} ({type(self).__name__}) needs a "
                                  f"model saved with {self.adapter}, but {model.tag} was saved "
                                  f"with {model.info.module}; save the service again")
        self._object = self._from_model(model.load_model(), model)
        self._ready = True
        self.metadata = dict(model.info.metadata)
        self.tag = str(model.tag)
        return self

    def _to_model(self, obj: Any) -> Any:
        return obj

    def _from_model(self, loaded: Any, model: Any) -> Any:
        return loaded

    # ----- BentoML 0.13 bundle files ----------------------------------------------------------

    def bundle_path(self, directory: Path) -> Path:
        return directory / f"{self.name}{self.suffix}"

    def save_files(self, directory: Path) -> None:
        """Write the artifact as BentoML 0.13 did, into a bundle's ``artifacts/``."""
        self.write_file(self.bundle_path(directory), self.get())
        if self.metadata:
            (directory / f"{self.name}.yml").write_text(yaml.safe_dump(self.metadata),
                                                        encoding="utf-8")

    def load_files(self, directory: Path) -> BentoServiceArtifact:
        """Read the artifact from a 0.13 bundle's ``artifacts/`` directory."""
        path = self.bundle_path(directory)
        if not path.exists():
            raise InvalidArgument(f"artifact {self.name!r} ({type(self).__name__}) has no "
                                  f"{path.name} in {directory}; the bundle is incomplete: save "
                                  "it again with BentoML 0.13")
        meta = directory / f"{self.name}.yml"
        metadata = yaml.safe_load(meta.read_text("utf-8")) if meta.is_file() else {}
        self._object = self.read_file(path)
        self._ready = True
        self.metadata = dict(metadata or {})
        return self

    def write_file(self, path: Path, obj: Any) -> None:
        import cloudpickle

        with open(path, "wb") as stream:
            cloudpickle.dump(obj, stream)

    def read_file(self, path: Path) -> Any:
        import cloudpickle

        with open(path, "rb") as stream:
            return cloudpickle.load(stream)


class PickleArtifact(BentoServiceArtifact):
    """Any picklable object (cloudpickle), stored with ``dosirak.picklable_model``."""

    def __init__(self, name: str, pickle_extension: str = ".pkl") -> None:
        super().__init__(name)
        self.suffix = pickle_extension


class JSONArtifact(BentoServiceArtifact):
    """A JSON-serialisable value (dicts, lists, numbers, strings)."""

    kind = "a JSON-serialisable value (dict, list, str, number, bool, None)"
    suffix = ".json"

    def __init__(self, name: str, file_extension: str = ".json", encoding: str = "utf-8",
                 json_module: Any = None) -> None:
        super().__init__(name)
        self.suffix = file_extension
        self.encoding = encoding

    def accepts(self, obj: Any) -> bool:
        try:
            json.dumps(obj)
        except (TypeError, ValueError):
            return False
        return True

    def write_file(self, path: Path, obj: Any) -> None:
        path.write_text(json.dumps(obj), encoding=self.encoding)

    def read_file(self, path: Path) -> Any:
        return json.loads(path.read_text(encoding=self.encoding))


class TextFileArtifact(BentoServiceArtifact):
    """A string (a vocabulary, a prompt, a configuration)."""

    kind = "a str"
    suffix = ".txt"

    def __init__(self, name: str, file_extension: str = ".txt", encoding: str = "utf-8") -> None:
        super().__init__(name)
        self.suffix = file_extension
        self.encoding = encoding

    def accepts(self, obj: Any) -> bool:
        return isinstance(obj, str)

    def write_file(self, path: Path, obj: Any) -> None:
        path.write_text(obj, encoding=self.encoding)

    def read_file(self, path: Path) -> Any:
        return path.read_text(encoding=self.encoding)


class ArtifactCollection(dict[str, BentoServiceArtifact]):
    """The artifacts of one service instance by name; ``artifacts.NAME`` is the object itself,
    ``artifacts["NAME"]`` (or ``.get("NAME")``) the artifact with its metadata."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            artifact = self[name]
        except KeyError:
            raise AttributeError(self._unknown(name)) from None
        return artifact.get()

    def __getitem__(self, name: str) -> BentoServiceArtifact:
        try:
            return super().__getitem__(name)
        except KeyError:
            raise KeyError(self._unknown(name)) from None

    def get(self, name: str, default: Any = None) -> Any:  # 0.x: the artifact, not the object
        return super().get(name, default)

    def get_artifact_list(self) -> list[BentoServiceArtifact]:
        return list(self.values())

    def _unknown(self, name: str) -> str:
        return (f"no artifact named {name!r}; the service declares "
                f"{sorted(self) or 'none'} with @artifacts([...])")


def collection(declared: list[BentoServiceArtifact]) -> ArtifactCollection:
    """Fresh, empty copies of the declared artifacts."""
    found = ArtifactCollection()
    for artifact in declared:
        dict.__setitem__(found, artifact.name, artifact.copy())
    return found


def check_declared(declared: Any) -> list[BentoServiceArtifact]:
    """What ``@artifacts([...])`` was given, checked: artifact instances with unique names."""
    if not isinstance(declared, (list, tuple)):
        raise InvalidArgument(f"@artifacts takes a list of artifacts such as "
                              f"[SklearnModelArtifact('model')], got {type(declared).__name__}")
    names: set[str] = set()
    for artifact in declared:
        if isinstance(artifact, type) and issubclass(artifact, BentoServiceArtifact):
            raise InvalidArgument(f"@artifacts got the class {artifact.__name__}; give an "
                                  f"instance with its name: {artifact.__name__}('model')")
        if not isinstance(artifact, BentoServiceArtifact):
            raise InvalidArgument(f"@artifacts takes artifacts such as "
                                  f"SklearnModelArtifact('model'), got {artifact!r}")
        if artifact.name in names:
            raise InvalidArgument(f"two artifacts are named {artifact.name!r}; each artifact "
                                  "of a service needs its own name")
        names.add(artifact.name)
    return list(declared)


def artifact_class(name: str) -> Callable[..., BentoServiceArtifact] | None:
    """The artifact class of a 0.x ``artifact_type`` name, or None if dosirak has none."""
    from dosirak.legacy import framework_artifacts

    found = getattr(framework_artifacts, name, None) or globals().get(name)
    if isinstance(found, type) and issubclass(found, BentoServiceArtifact):
        return found
    return None


def warn(message: str) -> None:
    _log.warning(message)
