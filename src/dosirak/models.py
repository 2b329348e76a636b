"""Stored models: the ``Model`` object and the store's Python API.

    >>> import dosirak
    >>> model = dosirak.models.get("iris_clf:latest")
    >>> model.tag, model.info.labels
"""

from __future__ import annotations

import builtins
import contextlib
import datetime
import functools
import importlib
import importlib.util
import os
import pkgutil
import platform
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle

from dosirak.__about__ import __version__
from dosirak.exceptions import (
    InUse,
    InvalidArgument,
    MissingDependency,
    ModelNotFound,
    StoreCorrupted,
)
from dosirak.external_modules import put_on_path as put_external_modules_on_path
from dosirak.external_modules import store as store_external_modules
from dosirak.signature import Signature, parse_signatures
from dosirak.store import model_store, model_users
from dosirak.store.manifest import build_manifest, check
from dosirak.store.versioned_store import fsync_tree
from dosirak.tag import Tag, new_version

if TYPE_CHECKING:
    from dosirak.runner import Runnable, Runner

CUSTOM_OBJECTS_FILE = "custom_objects.pkl"
#: The adapter module of models made with ``create`` (``dosirak.frameworks.directory``).
DIRECTORY_MODULE = "dosirak.directory"
API_VERSION = 1


@dataclass(frozen=True)
class ModelInfo:
    """What ``model.yaml`` says about a stored model."""

    name: str
    version: str
    module: str
    labels: dict[str, str]
    metadata: dict[str, Any]
    options: dict[str, Any]
    signatures: dict[str, Signature]
    context: dict[str, Any]
    creation_time: datetime.datetime
    size: int
    manifest: dict[str, dict[str, Any]] = field(repr=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInfo:
        created = data["creation_time"]
        if isinstance(created, str):
            created = datetime.datetime.fromisoformat(created)
        return cls(
            name=data["name"],
            version=data["version"],
            module=data["module"],
            labels=dict(data.get("labels") or {}),
            metadata=dict(data.get("metadata") or {}),
            options=dict(data.get("options") or {}),
            signatures={
                k: Signature.parse(k, v) for k, v in (data.get("signatures") or {}).items()
            },
            context=dict(data.get("context") or {}),
            creation_time=created,
            size=int(data.get("size", 0)),
            manifest=dict(data.get("manifest") or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "api_version": API_VERSION,
            "name": self.name,
            "version": self.version,
            "module": self.module,
            "labels": self.labels,
            "metadata": self.metadata,
            "options": self.options,
            "signatures": {k: v.to_dict() for k, v in self.signatures.items()},
            "context": self.context,
            "creation_time": self.creation_time.isoformat(),
            "size": self.size,
            "manifest": self.manifest,
        }


class Model:
    """A model in the store: its tag, its directory and its info."""

    def __init__(self, tag: Tag, path: Path, info: ModelInfo) -> None:
        self.tag = tag
        self.path = path
        self.info = info
        self._custom_objects: dict[str, Any] | None = None
        #: Keyword arguments added to each call of a method (``with_options``).
        self._partial_kwargs: dict[str, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"Model(tag={str(self.tag)!r}, path={str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Model) and other.tag == self.tag

    def __hash__(self) -> int:
        return hash(self.tag)

    @property
    def custom_objects(self) -> dict[str, Any]:
        """The Python objects saved beside the model (tokenizers, preprocessors...)."""
        if self._custom_objects is None:
            path = self.path / CUSTOM_OBJECTS_FILE
            if CUSTOM_OBJECTS_FILE in self.info.manifest:
                with self.reading(), open(path, "rb") as stream:
                    self._custom_objects = cloudpickle.load(stream)
            else:
                self._custom_objects = {}
        return self._custom_objects

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """A context for reading this model's files: a file that vanishes meanwhile means the
        version was deleted, which is said as ModelNotFound, not a bare FileNotFoundError."""
        if self.info.options.get("external_modules"):
            put_external_modules_on_path(self.path)  # before anything is unpickled
        try:
            yield
        except FileNotFoundError as error:
            if self.path.is_dir():
                raise  # the version is there: the missing file is someone else's
            raise ModelNotFound(f"model {self.tag} was deleted while it was being loaded "
                                f"({error.filename} is gone); save or import it again, or "
                                "load another version") from error

    def path_of(self, relative: str) -> Path:
        return self.path / relative

    def verify(self) -> None:
        """Re-hash every file against the manifest; raises StoreCorrupted on any difference."""
        check(self.path, self.info.manifest, full=True, what=f"model {self.tag}")

    def framework(self) -> Any:
        """The adapter module that saved this model (``dosirak.sklearn`` ...)."""
        check_module(self.info.module, str(self.tag))
        return importlib.import_module(self.info.module)

    def load_model(self, **kwargs: Any) -> Any:
        """Load the model object with the framework that saved it."""
        with self.reading():
            return self.framework().load_model(self, **kwargs)

    def to_runner(self, name: str | None = None, *, embedded: bool = False,
                  **options: Any) -> Runner:
        """A runner that serves this model's signatures (see ``dosirak.runner``).

        ``options`` are ``dosirak.Runner``'s (``max_batch_size``, ``max_latency_ms``,
        ``workers`` ...). Its worker processes build the same runnable from the model's full
        tag (``runnable_of``): the same version, whatever ``latest`` means by then.
        ``embedded=True`` keeps it in the API worker whatever the configuration places
        (BentoML's embedded runner; dosirak's ``local`` placement).
        """
        from dosirak.runner import RunnableSpec, Runner  # loaded on first use: asyncio & co

        params: dict[str, Any] = {"tag": str(self.tag)}
        if self._partial_kwargs:
            params["partial_kwargs"] = self._partial_kwargs
        spec = RunnableSpec.for_class(runnable_of, params)
        return Runner(model_runnable(self), name=name or self.tag.name, models=[self],
                      spec=spec, embedded=embedded, **options)

    def to_runnable(self) -> type[Runnable]:
        """The ``dosirak.Runnable`` class that loads this model (for a custom ``Runner``)."""
        return model_runnable(self)

    def with_options(self, *, partial_kwargs: dict[str, dict[str, Any]] | None = None
                     ) -> Model:
        """This model with call options: ``partial_kwargs={"predict": {"k": 1}}`` passes
        ``k=1`` to every ``predict`` call of its runners and runnables."""
        if partial_kwargs is not None and (
                not isinstance(partial_kwargs, dict) or
                not all(isinstance(v, dict) for v in partial_kwargs.values())):
            raise InvalidArgument("partial_kwargs maps method names to keyword arguments: "
                                  "{'predict': {'k': 1}}")
        unknown = set(partial_kwargs or {}) - set(self.info.signatures)
        if unknown:
            raise InvalidArgument(f"partial_kwargs names methods {sorted(unknown)} that model "
                                  f"{self.tag} has no signature for; its methods: "
                                  f"{sorted(self.info.signatures)}")
        copy = Model(self.tag, self.path, self.info)
        copy._partial_kwargs = {**self._partial_kwargs, **(partial_kwargs or {})}
        return copy


def model_runnable(model: Model) -> type[Runnable]:
    """A Runnable class that loads ``model`` and exposes one method per signature.

    A framework adapter may define ``runnable_method(loaded, method_name) -> callable`` to adapt
    calls (tensors, no-grad, output conversion); by default the model object's own method is
    used (``__call__`` calls the object itself).
    """
    from dosirak.input_spec import input_check
    from dosirak.runner import Runnable

    framework = model.framework()
    adapt = getattr(framework, "runnable_method", None)
    signatures = dict(model.info.signatures)
    partial_kwargs = dict(model._partial_kwargs)
    tag = str(model.tag)
    spec = model.info.options.get("input_spec") or {}
    checks = {name: input_check(spec, name, signature)
              for name, signature in signatures.items()}

    class ModelRunnable(Runnable):
        SUPPORTED_RESOURCES = getattr(framework, "SUPPORTED_RESOURCES", ("cpu",))
        SUPPORTS_CPU_MULTI_THREADING = getattr(framework, "SUPPORTS_CPU_MULTI_THREADING", True)

        def __init__(self) -> None:
            self.model = model.load_model()  # a delete racing the load: ModelNotFound
            self.methods_by_name: dict[str, Callable[..., Any]] = {}
            for name in signatures:
                if adapt is not None:
                    function = adapt(self.model, name)
                elif name == "__call__":
                    function = self.model
                else:
                    function = getattr(self.model, name, None)
                if not callable(function):
                    raise InvalidArgument(
                        f"model {tag} has no method {name!r} although its signatures list it; "
                        f"save it again with signatures naming methods it has"
                    )
                if partial_kwargs.get(name):
                    function = functools.partial(function, **partial_kwargs[name])
                self.methods_by_name[name] = function

        @classmethod
        def signatures(cls) -> dict[str, Signature]:
            return dict(signatures)

        @classmethod
        def input_check(cls, method: str) -> Callable[[tuple[Any, ...]], Any] | None:
            return checks.get(method)

    ModelRunnable.__qualname__ = ModelRunnable.__name__ = f"ModelRunnable[{tag}]"
    return ModelRunnable


def runnable_of(tag: str, partial_kwargs: dict[str, dict[str, Any]] | None = None
                ) -> Runnable:
    """The runnable of the stored model ``tag`` (the model loaded): what a runner's worker
    process builds from its plain-data spec."""
    model = get(tag)
    if partial_kwargs:
        model = model.with_options(partial_kwargs=partial_kwargs)
    return model_runnable(model)()


def framework_modules() -> builtins.list[str]:
    """The modules a stored model may name: dosirak's own adapters (``dosirak.sklearn`` ...)."""
    spec = importlib.util.find_spec("dosirak.frameworks")
    assert spec is not None and spec.submodule_search_locations is not None
    return sorted(f"dosirak.{found.name}"
                  for found in pkgutil.iter_modules(spec.submodule_search_locations))


def check_module(module: str, tag: str) -> None:
    """Refuse a model whose ``module`` is not one of dosirak's adapters.

    Loading imports that module: a model.yaml naming any other (``os``, a module of the
    archive's author) would run arbitrary code.
    """
    allowed = framework_modules()
    if module not in allowed:
        raise InvalidArgument(f"model {tag} names the module {module!r}, which is not one of "
                              f"dosirak's framework adapters ({', '.join(allowed)}); dosirak "
                              "loads models only through them. Save the model again with one")


# ----- the store's API ---------------------------------------------------------------------


def get(tag: Tag | str | Model, *, verify: bool = False) -> Model:
    """The stored model for ``name``, ``name:latest``, ``name:version`` or a version prefix.

    Sizes are always checked against the manifest; ``verify=True`` re-hashes every byte.
    """
    if isinstance(tag, Model):
        return tag
    store = model_store()
    tag = _pinned(Tag.parse(tag))
    for attempt in range(_READ_ATTEMPTS):
        last = attempt + 1 == _READ_ATTEMPTS
        full = store.resolve(tag)
        with store.pin(full) as replaced:
            path = store.path(full)
            try:
                info = ModelInfo.from_dict(store.read_info(full))
                check(path, info.manifest, full=verify, what=f"model {full}")
            except (StoreCorrupted, ModelNotFound, FileNotFoundError) as error:
                # An import with overwrite swaps the directory while we read: the info and the
                # files we saw may belong to two versions. Read again; only report what holds.
                if not last and replaced():
                    continue
                if isinstance(error, FileNotFoundError):  # deleted as it was read
                    raise store.not_found(full) from error
                raise
            if not last and replaced():
                continue
        return Model(full, path, info)
    raise AssertionError("unreachable: the last attempt returns or raises")


_READ_ATTEMPTS = 5
_PINS: dict[str, Tag] = {}


def pin_versions(tags: Iterable[Tag | str]) -> None:
    """From now on in this process, ``name`` and ``name:latest`` of each tag's model mean that
    tag's version: a bento's service (``get("iris_clf:latest")``) then loads the models the bento
    was built with, not one saved under the same name since (as BentoML's bento-local store).
    """
    for tag in tags:
        full = Tag.parse(tag)
        if full.version is None:
            raise InvalidArgument(f"cannot pin {full}: give the model's full tag name:version")
        _PINS[full.name] = full


def _pinned(tag: Tag) -> Tag:
    return _PINS.get(tag.name, tag) if tag.version is None else tag


def list(name: str | None = None) -> builtins.list[Model]:  # the seeds' name
    """Every stored model (or every version of one name), newest first."""
    store = model_store()
    found = []
    for tag in store.iter_tags(name):
        try:
            info = ModelInfo.from_dict(store.read_info(tag))
        except Exception:  # deleted while listing
            continue
        found.append(Model(tag, store.path(tag), info))
    found.sort(key=lambda m: (m.info.creation_time, m.tag.version), reverse=True)
    return found


def delete(tag: Tag | str, *, force: bool = False) -> Tag:
    """Delete one version (``name:latest`` deletes the newest). Returns the full tag deleted.

    A model that stored bentos use is kept (``InUse``) unless ``force``: bentos refer to the
    model store's models, and would stop serving without it.
    """
    store = model_store()
    full = store.resolve(tag)
    if not force and (users := model_users(full)):
        names = ", ".join(str(user) for user in users[:5]) + (
            f" and {len(users) - 5} more" if len(users) > 5 else "")
        raise InUse(f"model {full} is used by the bento{'s' if len(users) > 1 else ''} {names}; "
                    "delete those first (`dosirak delete TAG`), or pass force=True (CLI: "
                    "--force) to delete it anyway and break them")
    return store.delete(full)


def export_model(tag: Tag | str, dest: str, *, progress: Callable[[int], None] | None = None,
                 compression: str = "none",
                 storage_options: dict[str, Any] | None = None,
                 sign: str | os.PathLike[str] | None = None) -> str:
    """Write a model into a ``.dosirakmodel`` archive at a local path or fsspec URL.

    ``compression`` is ``"none"`` (a plain tar, written at copy speed: model weights barely
    compress), ``"zstd"`` (level 1), ``"zstd:LEVEL"`` (-7 to 19) or ``"gzip[:LEVEL]"``; import
    reads them all. docs/benchmarks.md has the measured trade-off.

    A folder (or a URL ending in ``/``) gets ``name-version.dosirakmodel`` inside it. For URLs,
    ``storage_options`` go to fsspec, e.g. ``{"key": ..., "secret": ..., "client_kwargs":
    {"endpoint_url": ...}}`` for s3; without them the environment (``AWS_*``) is used.

    ``sign``: an Ed25519 private key file (``generate_signing_keys``); importers holding its
    public key can then require that the archive is yours and unaltered.
    """
    from dosirak.store.archive import export_entry

    model = get(tag)
    return export_entry(model.path, model.tag, model.info.to_dict(), dest, progress=progress,
                        compression=compression, storage_options=storage_options,
                        sign_with=sign)


def generate_signing_keys(directory: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair into ``directory``: (private key, public key) paths.

    Sign exports with the private key (kept 0600, never share it); give importers the public
    key for ``import_model(require_signature=...)``. Needs ``pip install 'dosirak[signing]'``.
    """
    from dosirak.store.signing import generate_keys

    return generate_keys(directory)


def import_model(src: str, *, overwrite: bool = False,
                 progress: Callable[[int], None] | None = None,
                 storage_options: dict[str, Any] | None = None,
                 max_size: int | None = None,
                 require_signature: str | os.PathLike[str] | None = None) -> Model:
    """Import a ``.dosirakmodel`` archive; checked in full before the model becomes visible.

    Loading a model runs code from it (pickles): checksums prove only that the archive is
    whole, not who made it. ``require_signature``: an Ed25519 public key file; the archive must
    then be signed by its private key (``export_model(sign=...)``) or it is refused.

    ``storage_options`` go to fsspec when ``src`` is a URL, as in ``export_model``.
    ``max_size`` (bytes) bounds what the archive may unpack; by default the setting
    ``model_store.import_max_size`` (64 GiB). An archive that would not fit in the store's free
    space is refused too, before anything is written.
    """
    from dosirak.store.unpack import import_entry

    tag = import_entry(model_store(), src, overwrite=overwrite, progress=progress,
                       validate=valid_info, storage_options=storage_options,
                       max_size=_import_max_size(max_size), public_key=require_signature)
    return get(tag)


def valid_info(data: dict[str, Any]) -> None:
    """Check a ``model.yaml`` read from outside (an archive, a push): its fields, and that its
    framework module is on the allow-list; raises an exception that says what is wrong."""
    info = ModelInfo.from_dict(data)
    check_module(info.module, f"{info.name}:{info.version}")


def _import_max_size(max_size: int | None) -> int:
    if max_size is not None:
        if type(max_size) is not int or max_size < 0:
            raise InvalidArgument(f"max_size must be a number of bytes >= 0, not {max_size!r}")
        return max_size
    from dosirak.config import load_config  # pydantic, only when an import needs the setting

    return int(load_config().model_store.import_max_size)


# ----- saving (used by the framework adapters) ---------------------------------------------


_PLAIN_TYPES = (bool, int, float, str, datetime.date, datetime.datetime)


def _plain(value: Any, where: str) -> Any:
    """Metadata and labels must survive YAML: numpy scalars become Python numbers."""
    if value is None or type(value) in _PLAIN_TYPES:
        return value
    # Subclasses of plain types (numpy.float64, numpy.str_, IntEnum, pandas.Timestamp) have no
    # YAML representer: store them as their plain base type.
    for base in (int, float, str):
        if isinstance(value, base):
            return base(value)
    if isinstance(value, datetime.datetime):
        return datetime.datetime(*value.timetuple()[:6], value.microsecond, tzinfo=value.tzinfo)
    if isinstance(value, datetime.date):
        return datetime.date(value.year, value.month, value.day)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (builtins.list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    item = getattr(value, "item", None)  # numpy scalars and 0-d arrays
    if callable(item):
        try:
            return _plain(item(), where)
        except (ValueError, TypeError):
            pass
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return _plain(tolist(), where)
    raise InvalidArgument(f"{where} is a {type(value).__name__}, which cannot be stored as "
                          "metadata: use numbers, strings, booleans, lists and dicts "
                          "(put other objects in custom_objects)")


def save(
    name: str,
    *,
    module: str,
    write: Callable[[Path], dict[str, Any] | None],
    default_signatures: dict[str, Any],
    labels: dict[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
    custom_objects: dict[str, Any] | None = None,
    signatures: dict[str, Any] | None = None,
    framework_versions: dict[str, str] | None = None,
    external_modules: Iterable[Any] | None = None,
) -> Model:
    """Save a model atomically; ``write(directory)`` writes its files and returns its options.

    ``name`` may be ``name`` (a version is generated) or ``name:version``. ``external_modules``
    (imported modules of the project) are stored with it (``dosirak.external_modules``).
    """
    parsed = Tag.from_taglike(name)  # "IrisClf" is saved as irisclf, with a warning
    tag = Tag(parsed.name, parsed.version or new_version())
    if labels is not None and not isinstance(labels, Mapping):
        raise InvalidArgument(f"labels must be a dict of str -> str, got {type(labels).__name__}")
    clean_labels = {str(k): str(v) for k, v in (labels or {}).items()}
    clean_metadata = _plain(dict(metadata or {}), "metadata")
    # A model made with create() has no methods to call unless its author names some.
    parsed_signatures = parse_signatures(signatures, default_signatures) \
        if signatures is not None or default_signatures else {}
    store = model_store()
    draft = store.new_draft()
    try:
        options = write(draft) or {}
        if external_modules:
            options = {**options,
                       "external_modules": store_external_modules(draft, external_modules)}
        if custom_objects:
            with open(draft / CUSTOM_OBJECTS_FILE, "wb") as stream:
                cloudpickle.dump(dict(custom_objects), stream)
        # The disk writes the files while they are hashed; commit's fsync then finds them flushed.
        with ThreadPoolExecutor(1, thread_name_prefix="dosirak-fsync") as flusher:
            flushed = flusher.submit(fsync_tree, draft)
            manifest = build_manifest(draft)
            flushed.result()
        info = ModelInfo(
            name=tag.name,
            version=tag.version or "",
            module=module,
            labels=clean_labels,
            metadata=clean_metadata,
            options=_plain(options, "options"),
            signatures=parsed_signatures,
            context={
                "python_version": platform.python_version(),
                "dosirak_version": __version__,
                "framework_versions": dict(framework_versions or {}),
            },
            creation_time=datetime.datetime.now(datetime.UTC),
            size=sum(entry["size"] for entry in manifest.values()),
            manifest=manifest,
        )
        path = store.commit(draft, tag, info.to_dict())
    except BaseException:
        store.discard(draft)
        raise
    return Model(tag, path, info)


@contextlib.contextmanager
def create(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
    custom_objects: dict[str, Any] | None = None,
    external_modules: Iterable[Any] | None = None,
) -> Iterator[Model]:
    """Save a model by writing its files yourself (BentoML 1.2's way, no adapter needed).

        >>> with dosirak.models.create("my_llm") as model_ref:
        ...     tokenizer.save_pretrained(model_ref.path)
        ...     model.save_pretrained(model_ref.path)
        >>> path = dosirak.models.get("my_llm:latest").path      # where the service loads it

    Inside the block ``model_ref.path`` is an empty private directory; when the block ends the
    files are stored as one new version, atomically, as every save is (an exception in the
    block stores nothing). Afterwards ``model_ref`` is the stored model.
    """
    parsed = Tag.from_taglike(name)
    tag = Tag(parsed.name, parsed.version or new_version())
    store = model_store()
    scratch = store.new_draft()
    draft = Model(tag, scratch, ModelInfo(
        name=tag.name, version=tag.version or "", module=DIRECTORY_MODULE, labels={},
        metadata={}, options={}, signatures={}, context={},
        creation_time=datetime.datetime.now(datetime.UTC),
        size=0, manifest={}))
    try:
        yield draft

        def write(directory: Path) -> None:
            for entry in scratch.iterdir():  # same file system: renames, no copies
                os.replace(entry, directory / entry.name)

        saved = save(str(tag), module=DIRECTORY_MODULE, write=write, default_signatures={},
                     labels=labels, metadata=metadata, custom_objects=custom_objects,
                     external_modules=external_modules)
    finally:
        store.discard(scratch)
    draft.path, draft.info = saved.path, saved.info


def require(import_name: str, extra: str) -> Any:
    """Import a framework lazily, or say which extra installs it."""
    try:
        return importlib.import_module(import_name)
    except ImportError as error:
        raise MissingDependency(
            f"this model needs {import_name!r}, which is not installed ({error}); "
            f"install it with: pip install 'dosirak[{extra}]'"
        ) from error
