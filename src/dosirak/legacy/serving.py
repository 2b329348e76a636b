"""A ``BentoService`` class compiled into a ``dosirak.Service``.

Each ``@api`` method becomes an ``InferenceAPI`` whose input is its adapter (an IO descriptor)
and whose function runs the method on the service instance. The instance, with its artifacts,
is made once per worker when the server starts (``Service.inner``), like a class-style service.

``batch=True`` APIs are batchable APIs of the service: concurrent requests' rows go through
dosirak's adaptive dispatcher (``max_batch_size`` = ``mb_max_batch_size`` rows,
``max_latency_ms`` = ``mb_max_latency``), the method gets the merged batch, and each request gets
its own rows of the result; ``/metrics`` shows the batches under the service's name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dosirak.exceptions import InvalidArgument
from dosirak.legacy.bundle import bento_name
from dosirak.services import Service, build_api


def to_service(cls: type, make: Callable[[], Any], *, models: list[Any] | None = None,
               extra_metadata: dict[str, Any] | None = None,
               static_content: Path | None = None) -> Service:
    """The Service of the ``BentoService`` class ``cls``; ``make()`` returns the instance to
    serve, its artifacts loaded (called once per worker at startup)."""
    declared = cls.api_descriptors()  # type: ignore[attr-defined]
    if not declared:
        raise InvalidArgument(f"{cls.__name__} has no @api methods; declare one with "
                              "@api(input=DataframeInput(), batch=True)")
    svc = Service(bento_name(cls.__name__), models=list(models or []))
    executors: dict[str, Callable[[Any], Callable[..., Any]]] = {}
    for options in declared:
        adapter = options["input"]
        output = options["output"].for_api(unwrap=options["batch"] and adapter.single_item)
        attribute = f"api_{options['method']}"
        executors[attribute] = _executor(options, adapter, output)

        def placeholder(rows: Any) -> Any:  # replaced by the instance's executor at startup
            raise InvalidArgument("the service is not started")

        placeholder.__name__ = placeholder.__qualname__ = attribute
        batching: dict[str, Any] = {}
        if options["batch"]:
            batching = {"batchable": True, "batch_dim": (0, 0),
                        "max_batch_size": options["mb_max_batch_size"],
                        "max_latency_ms": float(options["mb_max_latency"])}
        svc.add_api(build_api(placeholder, input=adapter, output=output,
                              route=f"/{options['route']}", name=options["name"],
                              doc=options["doc"], **batching))

    def instance() -> Any:
        served = make()
        bound = _Instance()
        for attribute, executor in executors.items():
            setattr(bound, attribute, executor(served))
        bound.service = served
        return bound

    svc.inner = instance
    svc.__doc__ = cls.__doc__
    svc.extra_metadata = dict(extra_metadata or {})  # type: ignore[attr-defined]
    svc.static_content = static_content  # type: ignore[attr-defined]
    return svc


class _Instance:
    """What ``Service.inner`` makes: one executor per API, named as the APIs' functions."""

    service: Any = None


def _executor(options: dict[str, Any], adapter: Any,
              output: Any) -> Callable[[Any], Callable[..., Any]]:
    """``bind(instance)`` -> the function the API runs: on a merged batch of rows (batch=True,
    through the dispatcher) or on one request's rows."""
    method = options["method"]
    batch = options["batch"]

    def bind(instance: Any) -> Callable[..., Any]:
        function = getattr(instance, method)
        if batch:
            def run_batch(rows: Any) -> Any:
                result = adapter.call(function, adapter.batch_argument(rows))
                return output.rows(result)

            return run_batch

        def run_one(rows: Any) -> Any:
            return adapter.call(function, adapter.single_argument(rows))

        return run_one

    return bind
