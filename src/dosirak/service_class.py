"""The class style of services: a class whose typed methods are the APIs.

    >>> @dosirak.service(name="iris_classifier")
    ... class IrisClassifier:
    ...     model = dosirak.models.get("iris_clf:latest")     # declared: built into the bento
    ...
    ...     def __init__(self) -> None:                       # runs once per worker, at startup
    ...         self.clf = dosirak.sklearn.load_model(self.model)
    ...
    ...     @dosirak.api(batchable=True, max_batch_size=64, max_latency_ms=20)
    ...     def classify(self, input_series: np.ndarray) -> np.ndarray:
    ...         return self.clf.predict(input_series)

The decorator compiles the class into the same ``Service`` the seeds' style builds: each
``@dosirak.api`` method becomes an ``InferenceAPI`` whose descriptors come from its annotations
(``dosirak.io.annotations``). One parameter is the whole body; several make a ``Multipart``
input (a form, or one JSON object with a key per parameter). A batchable method receives
batches: concurrent requests are merged along ``batch_dim`` by the adaptive dispatcher.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from dosirak.exceptions import InvalidArgument
from dosirak.io.base import IODescriptor
from dosirak.services import Service, build_api
from dosirak.signature import DEFAULT_MAX_BATCH_SIZE

_MARK = "__dosirak_api__"


def api(
    function: Callable[..., Any] | None = None,
    *,
    route: str | None = None,
    name: str | None = None,
    doc: str | None = None,
    input: IODescriptor | None = None,
    output: IODescriptor | None = None,
    batchable: bool = False,
    batch_dim: int | tuple[int, int] = 0,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    max_latency_ms: float | None = None,
) -> Any:
    """Mark a method of a ``@dosirak.service`` class as an inference API.

    ``batchable`` methods take and return whole batches; ``batch_dim`` is the axis requests are
    stacked on (an ``(input, output)`` pair when they differ), ``max_batch_size`` counts rows and
    ``max_latency_ms`` is the latency budget the dispatcher keeps to.

    ``dosirak.api`` is this decorator, or BentoML 0.x's ``@api`` when given 0.x arguments
    (``dosirak.api_styles``).
    """
    dims = (batch_dim, batch_dim) if isinstance(batch_dim, int) else tuple(batch_dim)
    if len(dims) != 2 or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
        raise InvalidArgument(f"batch_dim must be an int or an (input, output) pair of ints, "
                              f"got {batch_dim!r}")
    if not isinstance(max_batch_size, int) or max_batch_size < 1:
        raise InvalidArgument(f"max_batch_size must be an int >= 1 (rows), got "
                              f"{max_batch_size!r}")
    if max_latency_ms is not None and (not isinstance(max_latency_ms, (int, float)) or
                                       max_latency_ms <= 0):
        raise InvalidArgument(f"max_latency_ms must be a positive number, got "
                              f"{max_latency_ms!r}")
    options = {"route": route, "name": name, "doc": doc, "input": input, "output": output,
               "batchable": batchable, "batch_dim": dims,
               "max_batch_size": max_batch_size if batchable else None,
               "max_latency_ms": max_latency_ms}

    def mark(method: Callable[..., Any]) -> Callable[..., Any]:
        setattr(method, _MARK, options)
        return method

    return mark(function) if function is not None else mark


def service(
    inner: type | None = None,
    *,
    name: str | None = None,
    runners: list[Any] | None = None,
    **config: Any,
) -> Any:
    """Turn a class into a ``Service`` (usable bare, ``@dosirak.service``, or with options).

    Models (``dosirak.Model`` objects) and runners assigned as class attributes are declared
    with the service; ``config`` (``resources``, ``traffic``, ``workers``...) is kept for the
    server. The class is instantiated once per worker when the server starts.
    """

    def compile_class(cls: type) -> Service:
        if not isinstance(cls, type):
            raise InvalidArgument(f"@dosirak.service decorates classes, got {cls!r}")
        from dosirak.models import Model

        declared_runners = list(runners or [])
        models = []
        for value in vars(cls).values():
            if isinstance(value, Model):
                models.append(value)
            elif _is_runner(value) and value not in declared_runners:
                declared_runners.append(value)
        svc = Service(name or _service_name(cls.__name__), runners=declared_runners,
                      models=models)
        svc.inner = cls
        svc.config = dict(config)
        for klass in reversed(cls.__mro__):
            for attribute, value in vars(klass).items():
                options = getattr(value, _MARK, None)
                if options is None:
                    if getattr(value, "__dosirak_legacy_api__", None) is not None:
                        raise InvalidArgument(
                            f"{cls.__name__}.{attribute} is declared with BentoML 0.x's "
                            "@api(input=..., batch=...), but the class is a @dosirak.service: "
                            "use @dosirak.api(batchable=..., max_batch_size=..., "
                            "max_latency_ms=...) with dosirak.io descriptors, or subclass "
                            "dosirak.BentoService (without @dosirak.service)")
                    continue
                if attribute in svc.apis:  # a subclass overrides its parent's API
                    del svc.apis[attribute]
                svc.add_api(build_api(value, skip_self=True, **options))
        if not svc.apis:
            raise InvalidArgument(f"class {cls.__name__} has no @dosirak.api methods")
        svc.__doc__ = cls.__doc__
        return svc

    return compile_class(inner) if inner is not None else compile_class


def _is_runner(value: Any) -> bool:
    from dosirak.runner import Runner

    return isinstance(value, Runner)


def _service_name(class_name: str) -> str:
    """``IrisClassifier`` -> ``iris_classifier``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", class_name).lower()
