"""``BentoService``: the 0.x way to write a service (seeds 001 and 004), on dosirak's machinery.

    >>> @env(infer_pip_packages=True)
    ... @artifacts([SklearnModelArtifact("model")])
    ... class IrisClassifier(BentoService):
    ...     @api(input=DataframeInput(), batch=True)
    ...     def predict(self, df):
    ...         return self.artifacts.model.predict(df)
    >>> svc = IrisClassifier()
    >>> svc.pack("model", clf)
    >>> saved_path = svc.save()              # a bento in the bento store, artifacts as models

A saved service is an ordinary bento: ``dosirak serve IrisClassifier:latest`` serves it (on port
5000, as 0.x did), ``dosirak run`` calls it, ``dosirak containerize`` builds its image. Serving
compiles the class into a ``dosirak.Service`` (``dosirak.legacy.serving``): each ``@api`` is an
API whose input adapter is an IO descriptor, and ``batch=True`` runs through the adaptive batching
dispatcher with ``mb_max_batch_size`` rows and ``mb_max_latency`` milliseconds.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dosirak.exceptions import InvalidArgument
from dosirak.legacy.artifacts import ArtifactCollection, check_declared, collection
from dosirak.legacy.environment import BentoServiceEnv, _check_class
from dosirak.legacy.inputs import BaseInputAdapter, LegacyAdapter
from dosirak.legacy.outputs import BaseOutputAdapter, DefaultOutput

#: BentoML 0.x's documented defaults (seed 004): 1000 rows, 10 s.
DEFAULT_MAX_BATCH_SIZE = 1000
DEFAULT_MAX_LATENCY = 10000
LEGACY_MARK = "__dosirak_legacy_api__"
#: The options only the 0.x ``@api`` takes; any of them says the call is the 0.x decorator.
LEGACY_OPTIONS = frozenset({"batch", "mb_max_batch_size", "mb_max_latency", "api_name",
                            "api_doc"})
_VERSION = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_RESERVED = ("index", "swagger", "docs", "healthz", "livez", "readyz", "metrics", "metadata",
             "feedback", "static")


def is_legacy_call(function: Any, input: Any, output: Any, options: dict[str, Any]) -> bool:
    """Whether ``@dosirak.api(...)`` was called the 0.x way (adapters, ``batch=``...)."""
    return (bool(set(options) & LEGACY_OPTIONS) or isinstance(input, LegacyAdapter)
            or isinstance(output, LegacyAdapter)
            or (isinstance(function, type) and issubclass(function, BaseInputAdapter)))


def api(*args: Any, input: Any = None, output: Any = None, api_name: str | None = None,
        route: str | None = None, api_doc: str | None = None,
        mb_max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        mb_max_latency: float = DEFAULT_MAX_LATENCY, batch: bool = False,
        **adapter_options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare an inference API of a ``BentoService`` (BentoML 0.x's ``@api``).

    ``input`` is an input adapter (``DataframeInput()``...), ``output`` an output (default
    ``DefaultOutput()``). ``batch=True``: the function takes and returns a batch, merged from
    concurrent requests by the adaptive dispatcher within ``mb_max_batch_size`` rows and a
    ``mb_max_latency`` millisecond budget. The docstring (or ``api_doc``) shows in Swagger UI.
    """
    if input is None:
        if not args or not (isinstance(args[0], type) and issubclass(args[0], BaseInputAdapter)):
            raise InvalidArgument("@api needs an input adapter: @api(input=DataframeInput(), "
                                  "batch=True)")
        input = args[0](*args[1:], **adapter_options)
    elif args or adapter_options:
        raise InvalidArgument(f"@api got unexpected arguments {list(args)} "
                              f"{sorted(adapter_options)}; give input=..., output=..., "
                              "batch=..., mb_max_batch_size=..., mb_max_latency=...")
    if not isinstance(input, BaseInputAdapter):
        raise InvalidArgument(f"@api(input=...) must be an input adapter such as "
                              f"DataframeInput() (from dosirak.adapters), got {input!r}")
    output = output if output is not None else DefaultOutput()
    if not isinstance(output, BaseOutputAdapter):
        raise InvalidArgument(f"@api(output=...) must be an output such as DefaultOutput() or "
                              f"JsonOutput() (from dosirak.adapters), got {output!r}")
    if not isinstance(mb_max_batch_size, int) or isinstance(mb_max_batch_size, bool) \
            or mb_max_batch_size < 1:
        raise InvalidArgument(f"mb_max_batch_size must be an int >= 1 (rows), got "
                              f"{mb_max_batch_size!r}")
    if not isinstance(mb_max_latency, (int, float)) or mb_max_latency <= 0:
        raise InvalidArgument(f"mb_max_latency must be a positive number of milliseconds, got "
                              f"{mb_max_latency!r}")

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(function):
            raise InvalidArgument(f"@api decorates methods, got {function!r}")
        name = api_name or function.__name__
        if not name.isidentifier() or name in _RESERVED:
            raise InvalidArgument(f"API name {name!r} must be a Python identifier and not one "
                                  f"of the server's own routes {_RESERVED}")
        setattr(function, LEGACY_MARK, {
            "name": name, "route": (route or name).strip("/"),
            "doc": api_doc if api_doc is not None else inspect.cleandoc(function.__doc__ or ""),
            "input": input, "output": output, "batch": bool(batch),
            "mb_max_batch_size": mb_max_batch_size, "mb_max_latency": mb_max_latency})
        return function

    return decorate


def artifacts(declared: list[Any]) -> Callable[[type], type]:
    """Declare the artifacts (models) of a ``BentoService`` class."""
    checked = check_declared(declared)

    def decorate(cls: type) -> type:
        _check_class(cls, "@artifacts")
        cls._declared_artifacts = checked
        return cls

    return decorate


def web_static_content(directory: str) -> Callable[[type], type]:
    """Serve the files of ``directory`` (an ``index.html`` and what it loads) at ``/``; the
    APIs stay at their routes and Swagger UI moves to ``/docs``."""

    def decorate(cls: type) -> type:
        _check_class(cls, "@web_static_content")
        cls._web_static_content = directory
        return cls

    return decorate


def ver(major: int, minor: int) -> Callable[[type], type]:
    """Version saved services ``MAJOR.MINOR.<generated or given version>``."""
    if not all(isinstance(part, int) and part >= 0 for part in (major, minor)):
        raise InvalidArgument(f"@ver takes two ints >= 0, got major={major!r} minor={minor!r}")

    def decorate(cls: type) -> type:
        _check_class(cls, "@ver")
        cls._version_major, cls._version_minor = major, minor
        return cls

    return decorate


class BentoService:
    """Base class of 0.x prediction services: ``@artifacts``, ``@env`` and ``@api`` methods."""

    _declared_artifacts: list[Any] = []
    _env: BentoServiceEnv | None = None
    _web_static_content: str | None = None
    _version_major: int | None = None
    _version_minor: int | None = None
    _bento_service_name: str | None = None
    #: Set on classes loaded from a saved bundle: its directory and version.
    _bundle_path: Path | None = None
    _bundle_version: str | None = None

    def __init__(self) -> None:
        self._artifacts = collection(self._declared_artifacts)
        self._version: str | None = self._bundle_version
        self._env_instance = self._env or BentoServiceEnv()
        for descriptor in self.api_descriptors():
            self._env_instance.add_pip_packages(descriptor["input"].pip_dependencies)
            self._env_instance.add_pip_packages(descriptor["output"].pip_dependencies)

    # ----- what the class declares --------------------------------------------------------

    @classmethod
    def api_descriptors(cls) -> list[dict[str, Any]]:
        """The ``@api`` methods' options, in definition order (a subclass overrides its parent's
        method of the same name)."""
        found: dict[str, dict[str, Any]] = {}
        for klass in reversed(cls.__mro__):
            for attribute, value in vars(klass).items():
                options = getattr(value, LEGACY_MARK, None)
                if options is not None:
                    found[attribute] = {**options, "method": attribute}
                elif getattr(value, "__dosirak_api__", None) is not None:
                    raise InvalidArgument(
                        f"{cls.__name__}.{attribute} is marked with @dosirak.api of "
                        "@dosirak.service classes (batchable=, max_batch_size=...), but "
                        f"{cls.__name__} is a BentoService: declare it with the 0.x form, "
                        "@api(input=DataframeInput(), batch=True), or make the class a "
                        "@dosirak.service")
        return list(found.values())

    @property
    def name(self) -> str:
        return self._bento_service_name or type(self).__name__

    @property
    def artifacts(self) -> ArtifactCollection:
        """The artifacts by name; ``self.artifacts.model`` is the packed model itself."""
        return self._artifacts

    @property
    def env(self) -> BentoServiceEnv:
        return self._env_instance

    @property
    def web_static_content(self) -> str | None:
        return self._web_static_content

    @property
    def inference_apis(self) -> list[dict[str, Any]]:
        return self.api_descriptors()

    # ----- versions -----------------------------------------------------------------------

    @property
    def version(self) -> str:
        """The version the next save uses (generated once, as 0.x: ``20240101120000_A1B2C3``)."""
        if self._version is None:
            self.set_version()
        assert self._version is not None
        return self._version

    def set_version(self, version_str: str | None = None) -> str:
        version = version_str if version_str is not None else self.versioneer()
        if self._version_major is not None and self._version_minor is not None:
            version = f"{self._version_major}.{self._version_minor}.{version}"
        if not isinstance(version, str) or not _VERSION.match(version) \
                or version.lower() == "latest":
            raise InvalidArgument(f"version {version!r} must be 1-128 letters, digits, '_', "
                                  "'.' and '-', and not 'latest'")
        self._version = version
        return version

    def versioneer(self) -> str:
        import datetime
        import uuid

        stamp = datetime.datetime.now().strftime("%Y%m%d%H%M%S")
        return f"{stamp}_{uuid.uuid4().hex[:6].upper()}"

    # ----- packing and saving -------------------------------------------------------------

    def pack(self, name: str, *args: Any, **kwargs: Any) -> BentoService:
        """Put a trained model (or any object its artifact takes) into the artifact ``name``."""
        if name not in self._artifacts:
            declared = sorted(self._artifacts) or "none"
            raise InvalidArgument(f"{self.name} has no artifact named {name!r} (it declares "
                                  f"{declared}); pack one of those, or add it to "
                                  f"@artifacts([...]) of {type(self).__name__}")
        self._artifacts[name].pack(*args, **kwargs)
        return self

    def save(self, yatai_url: str | None = None, version: str | None = None,
             labels: dict[str, str] | None = None) -> str:
        """Save the service as a bento in the bento store (its artifacts as models in the model
        store); returns the bento's directory. ``yatai_url``: also push it, with its models, to
        the dosirak hub at that URL (0.x's Yatai), signed in with `dosirak hub login URL`."""
        from dosirak.legacy.bundle import save_to_store

        hub = None
        if yatai_url is not None:  # the token is found before anything is saved
            from dosirak.hub.client import HubClient

            hub = HubClient.for_url(yatai_url)
        path = save_to_store(self, version=version, labels=labels)
        if hub is not None:
            with hub:  # the bento store's layout: .../NAME/VERSION
                hub.push_bento(f"{Path(path).parent.name}:{Path(path).name}")
        return path

    def save_to_dir(self, path: str, version: str | None = None) -> str:
        """Write the service into ``path`` in BentoML 0.13's saved-bundle layout (artifacts as
        files), which ``dosirak.load``, ``dosirak serve PATH`` and ``dosirak import`` read."""
        from dosirak.legacy.bundle import save_to_dir

        return save_to_dir(self, path, version=version)

    def get_inference_api(self, api_name: str | None = None) -> dict[str, Any]:
        apis = self.api_descriptors()
        for found in apis:
            if api_name is None or found["name"] == api_name:
                return found
        raise InvalidArgument(f"{self.name} has no API {api_name!r}; its APIs: "
                              f"{[a['name'] for a in apis]}")

    def to_service(self) -> Any:
        """This service, with its artifacts, as a ``dosirak.Service`` ready to serve."""
        from dosirak.legacy.serving import to_service

        return to_service(type(self), lambda: self)
