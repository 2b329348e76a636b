"""``dosirak.api``: one name for the ``@api`` of both styles of service.

    >>> @dosirak.api(batchable=True, max_batch_size=64)      # a @dosirak.service class's method
    >>> @dosirak.api(input=DataframeInput(), batch=True)      # a BentoService's (BentoML 0.x)

Called with BentoML 0.x's arguments (an adapter such as ``DataframeInput()``, ``batch=``,
``mb_max_batch_size=``, ``mb_max_latency=``, ``api_name=``, ``api_doc=``, or an adapter class and
its options), it is the ``@api`` of ``BentoService`` classes (``dosirak.legacy.service.api``);
otherwise the decorator of ``@dosirak.service`` classes (``dosirak.service_class.api``). Mixing
the two styles' arguments is an error. This face sits above both, so neither imports the other;
the 0.x layer is imported only when one of its objects or arguments is given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dosirak import service_class
from dosirak.exceptions import InvalidArgument
from dosirak.io.base import IODescriptor
from dosirak.signature import DEFAULT_MAX_BATCH_SIZE


def api(
    function: Callable[..., Any] | None = None,
    *args: Any,
    route: str | None = None,
    name: str | None = None,
    doc: str | None = None,
    input: IODescriptor | None = None,
    output: IODescriptor | None = None,
    batchable: bool = False,
    batch_dim: int | tuple[int, int] = 0,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    max_latency_ms: float | None = None,
    **legacy: Any,
) -> Any:
    """Mark a method as an inference API: of a ``@dosirak.service`` class (see
    ``dosirak.service_class.api``), or of a ``BentoService`` when given 0.x arguments (see
    ``dosirak.legacy.service.api``)."""
    if legacy or args or _is_legacy(function, input, output):
        return _legacy_api(function, args, route, name, doc, input, output, batchable,
                           batch_dim, max_batch_size, max_latency_ms, legacy)
    return service_class.api(function, route=route, name=name, doc=doc, input=input,
                             output=output, batchable=batchable, batch_dim=batch_dim,
                             max_batch_size=max_batch_size, max_latency_ms=max_latency_ms)


def _is_legacy(function: Any, input: Any, output: Any) -> bool:
    if not any(type(value).__module__.startswith("dosirak.legacy")
               or (isinstance(value, type) and value.__module__.startswith("dosirak.legacy"))
               for value in (function, input, output)):
        return False  # the legacy layer is imported only when one of its objects is given
    from dosirak.legacy.service import is_legacy_call

    return is_legacy_call(function, input, output, {})


def _legacy_api(function: Any, args: tuple[Any, ...], route: str | None, name: str | None,
                doc: str | None, input: Any, output: Any, batchable: bool, batch_dim: Any,
                max_batch_size: int, max_latency_ms: float | None,
                legacy: dict[str, Any]) -> Any:
    """``@dosirak.api`` called with 0.x arguments: the ``BentoService`` decorator."""
    from dosirak.legacy.service import LEGACY_OPTIONS
    from dosirak.legacy.service import api as legacy_api

    modern = [key for key, value, default in (
        ("batchable", batchable, False), ("batch_dim", batch_dim, 0),
        ("max_batch_size", max_batch_size, DEFAULT_MAX_BATCH_SIZE),
        ("max_latency_ms", max_latency_ms, None),
        ("name", name, None), ("doc", doc, None)) if value != default]
    if modern:
        old_style = sorted(set(legacy) & LEGACY_OPTIONS) or "a 0.x adapter"
        raise InvalidArgument(
            f"@dosirak.api got arguments of both styles: {old_style} (BentoService classes) "
            f"and {modern} (@dosirak.service "
            "classes); in a BentoService write @api(input=DataframeInput(), batch=True, "
            "mb_max_batch_size=..., mb_max_latency=..., api_name=..., api_doc=...), in a "
            "@dosirak.service class @api(batchable=True, max_batch_size=..., "
            "max_latency_ms=...) with dosirak.io descriptors")
    if function is not None and not isinstance(function, type):
        raise InvalidArgument("the 0.x @api needs its arguments: @api(input=DataframeInput(), "
                              "batch=True)")
    positional = (function, *args) if function is not None else args
    return legacy_api(*positional, input=input, output=output, route=route, **legacy)
