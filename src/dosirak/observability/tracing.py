"""OpenTelemetry tracing of a service (``tracing:`` in the configuration; ``dosirak[tracing]``).

    >>> tracing = Tracing(config.tracing, service_name="iris_classifier")
    >>> app.handler = tracing.http(app.handler)      # a span per HTTP request
    >>> call = tracing.api_span(api.name, call, is_async)  # a span per API call
    >>> tracing.instrument_batches(svc)               # a span per runner batch, per worker call

Spans: one per HTTP request (``SERVER``, continuing an incoming W3C ``traceparent``), one per API
call inside it, and one per runner batch, which starts a trace of its own with a link to the
API call of every request whose rows it carried (one batch, many parents). With placement
``process``, each call into a runner worker process gets a span there too, a child of the batch
span: the call frame carries the batch span's W3C ``traceparent`` across the transport, and the
worker exports its spans as the server does (``WorkerTracing``). The access log line of a
traced request carries its trace id, and the access log notes the request's status on its
span. Spans go to an OTLP/HTTP collector (``exporter: otlp``) or, as JSON lines, to standard
output or a file (``console``, ``span_lines.SpanLines``), in batches from a thread of their
own; ``sample_rate`` of the traces are kept (an incoming trace's decision is kept).

What a span costs matters: a small model serves a request in a few tens of microseconds, and
the SDK's tracer spends ~15 us on each span. The spans are therefore dosirak's own
(``spans.RecordedSpan``: the OpenTelemetry API's ``Span``, made current through
OpenTelemetry's context), turned into the SDK's ``ReadableSpan`` only on the exporting thread.

This module is imported only when tracing is on: with it off, nothing of OpenTelemetry is
imported and the request path has nothing extra to do.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from contextvars import ContextVar
from typing import Any

from dosirak.exceptions import DosirakError, MissingDependency
from dosirak.observability.access_log import AccessLog

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from dosirak.observability.spans import SpanMaker, SpanRecorder
except ImportError:  # pragma: no cover - the message says how to fix it
    raise MissingDependency("tracing needs OpenTelemetry: pip install 'dosirak[tracing]'") \
        from None

_PROPAGATOR = TraceContextTextMapPropagator()
_SERVER = trace.SpanKind.SERVER
_ERROR = trace.StatusCode.ERROR
_INFO = logging.INFO
_ROOT = otel_context.Context()
_Link = trace.Link
_span_of = trace.get_current_span
_SPAN_KEY = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, _ROOT)))  # the API's key
_TRACE_HEADERS = frozenset((b"traceparent", b"tracestate"))


def _context_variable() -> ContextVar[Any] | None:
    """The context variable behind OpenTelemetry's current context, when it is the default
    runtime context (``contextvars``): the request path then reads and sets it directly, a C
    call each instead of the API's three Python calls; None for any other runtime context."""
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    if type(runtime) is not ContextVarsRuntimeContext:
        return None
    variable = getattr(runtime, "_current_context", None)
    return variable if isinstance(variable, ContextVar) else None


_VARIABLE = _context_variable()
_current: Any
_attach: Any
_detach: Any
_Context = otel_context.Context
if _VARIABLE is not None:
    _current = _VARIABLE.get
    _attach = _VARIABLE.set

    # The token always comes from the same context here (set and reset in one task, or one
    # greenlet): unlike the API's detach, there is no foreign token to forgive.
    _detach = _VARIABLE.reset

    def _current_span() -> Any:
        return _current().get(_SPAN_KEY)
else:  # pragma: no cover - an application that configured another runtime context
    _current = otel_context.get_current
    _attach = otel_context.attach
    _detach = otel_context.detach

    def _current_span() -> Any:
        return trace.get_current_span()

# The span of the HTTP request being served (the access log notes its status on it).
_REQUEST_SPAN: ContextVar[Any] = ContextVar("dosirak_request_span", default=None)


def _incoming(headers: list[tuple[bytes, bytes]]) -> Any:
    """The span context of an incoming W3C ``traceparent`` (None without one, the common
    case)."""
    carrier = None
    for key, value in headers:
        if key in _TRACE_HEADERS:
            if carrier is None:
                carrier = {}
            carrier[key.decode("latin-1")] = value.decode("latin-1")
    if carrier is None:
        return None
    return _span_of(_PROPAGATOR.extract(carrier)).get_span_context()


def _failed(span: Any, error: BaseException) -> None:
    """Note an exception leaving the span, as the SDK's ``start_as_current_span`` does, except
    that dosirak's refusals and the client's errors (``DosirakError`` that is not a failure:
    a 4xx, a 503 shedding load) and cancellations get their type and message without a
    stack trace: formatting one costs ~100 us, and an overloaded server refusing calls must
    not spend more per refusal than the answer costs."""
    if not span.is_recording():
        return
    if isinstance(error, Exception) and not (isinstance(error, DosirakError)
                                             and not error.failure):
        span.record_exception(error)
    else:
        kind = type(error)
        span.add_event("exception", {"exception.type": f"{kind.__module__}.{kind.__qualname__}",
                                     "exception.message": str(error)})
    span.set_status(trace.Status(_ERROR, f"{type(error).__name__}: {error}"))


class Tracing:
    """The spans of one server process: the wrappers that make them, the thread exporting them.

    Spans are ``dosirak.observability.spans.RecordedSpan`` (the OpenTelemetry API's ``Span``,
    made and queued for a few microseconds), current through OpenTelemetry's context, so code
    inside an API sees them with ``trace.get_current_span()``; they reach the exporter as the
    SDK's ``ReadableSpan`` (or as they are, for ``SpanLines``).
    """

    def __init__(self, config: Any, service_name: str, *,
                 offload_export: bool | None = None) -> None:
        """``offload_export``: the console exporter's lines formatted by a writer process
        (default: when this process may run on more than one CPU)."""
        if offload_export is None:
            offload_export = len(os.sched_getaffinity(0)) > 1
        service_name = config.service_name or service_name
        #: What a runner worker process needs to export its spans the same way.
        self.settings = {"exporter": config.exporter, "endpoint": config.endpoint,
                         "sample_rate": config.sample_rate, "service_name": service_name,
                         "console_file": config.console_file}
        if config.exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter: Any = OTLPSpanExporter(endpoint=config.endpoint)
        else:
            from dosirak.observability.span_lines import SpanLines

            exporter = SpanLines(config.console_file, offload=offload_export)
        self.recorder = SpanRecorder([exporter],
                                     Resource.create({"service.name": service_name}))
        self.spans = SpanMaker(self.recorder, config.sample_rate)

    def add_exporter(self, exporter: Any) -> None:
        """Also send the spans to ``exporter`` (an SDK ``SpanExporter``, e.g. the in-memory
        one in tests)."""
        self.recorder.add_exporter(exporter)

    def shutdown(self) -> None:
        """Export what is left and stop."""
        self.recorder.shutdown()

    # ----- HTTP -----------------------------------------------------------------------------

    def http(self, app: Any) -> Any:
        """``app`` with a span around each HTTP request (put it outside the traffic layer, so
        that the access line is written inside the span)."""
        start = self.spans.start
        root = self.spans.root

        async def traced(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            method = scope["method"]
            path = scope["path"]
            headers = scope["headers"]
            for key, _ in headers:
                if key in _TRACE_HEADERS:  # a trace to continue (or a decision to keep)
                    span = start(f"{method} {path}", _incoming(headers), _SERVER,
                                 {"http.request.method": method, "url.path": path})
                    break
            else:
                span = root(f"{method} {path}", _SERVER,
                            {"http.request.method": method, "url.path": path})
            # Unsampled too: the API call's span reads the decision from it. The API's span is
            # the one made current in OpenTelemetry's context (what API code sees); this one is
            # found through a context variable of our own, one set and reset per request.
            noted = _REQUEST_SPAN.set(span)
            try:
                await app(scope, receive, send)
            except BaseException as error:
                _failed(span, error)
                raise
            finally:
                _REQUEST_SPAN.reset(noted)
                span.end()

        return traced

    def access_log(self) -> AccessLog:
        """An access log whose lines carry the trace id of the request, and which gives the
        request's span its status code (use it with ``http``)."""
        return _TracedAccessLog()

    # ----- APIs and batches -----------------------------------------------------------------

    def instrument_batches(self, svc: Any) -> None:
        """Give every batching dispatcher of ``svc`` (runner methods and batchable APIs) a
        span per batch, and runner worker processes a span per call; call after the service
        started."""
        for runner in svc.runners:
            for name, method in runner.methods.items():
                if method.dispatcher is not None:
                    method.dispatcher.tracer = _BatchTracer(self.spans, f"{runner.name}.{name}")
        for dispatcher in getattr(svc, "_dispatchers", []):
            dispatcher.tracer = _BatchTracer(self.spans, dispatcher.name)
        carrier = _WorkerCarrier(self.settings)
        for runner in svc.runners:
            runner.trace_workers(carrier)  # placement process: a span per call in the worker

    def api_span(self, name: str, function: Any, is_async: bool) -> Any:
        """``function`` (an API's callable) in a span per call (none when the request's trace
        is not sampled)."""
        child = self.spans.child
        span_name = f"api {name}"

        if is_async:
            @functools.wraps(function)
            async def traced_async(*args: Any, **kwargs: Any) -> Any:
                context = _current()
                parent = (_REQUEST_SPAN.get() or _span_of(context)).get_span_context()
                if not parent[3] & 1:  # not sampled (nor valid)
                    return await function(*args, **kwargs)
                span = child(span_name, parent)
                # the API's set_span_in_context(span, context), inline
                token = _attach(_Context({**context, _SPAN_KEY: span}))
                try:
                    return await function(*args, **kwargs)
                except BaseException as error:
                    _failed(span, error)
                    raise
                finally:
                    _detach(token)
                    span.end()

            assert inspect.iscoroutinefunction(traced_async)
            return traced_async

        @functools.wraps(function)
        def traced(*args: Any, **kwargs: Any) -> Any:
            context = _current()
            parent = (_REQUEST_SPAN.get() or _span_of(context)).get_span_context()
            if not parent[3] & 1:  # not sampled (nor valid)
                return function(*args, **kwargs)
            with _Current(child(span_name, parent), context):
                return function(*args, **kwargs)

        return traced


class _BatchTracer:
    """What a dispatcher calls: the caller's span context at submit, a span around a batch."""

    def __init__(self, spans: SpanMaker, label: str) -> None:
        self.start = spans.start
        self.name = f"batch {label}"

    @staticmethod
    def caller() -> Any:
        """The span context of the call being submitted (its API call's span), None when it
        is not sampled (nothing to link to)."""
        span = _current_span()
        if span is None:
            return None
        context = span.get_span_context()
        return context if context[3] & 1 else None

    async def run(self, callers: list[Any], rows: int, execute: Any, args: Any,
                  kwargs: Any) -> Any:
        """``execute(args, kwargs)`` inside a span linked to every caller's span; without a
        span when no caller's trace is sampled (it would link to nothing recorded)."""
        links = [_Link(context) for context in callers if context is not None]
        if not links:
            return await execute(args, kwargs)
        # A trace of its own, recorded since a request it served is.
        span = self.start(self.name, None, trace.SpanKind.INTERNAL, {
            "dosirak.batch.rows": rows, "dosirak.batch.calls": len(callers)}, links, True)
        with _Current(span, _ROOT):
            return await execute(args, kwargs)


class _Current:
    """``span`` current inside the block, ended after it, an exception noted on it."""

    __slots__ = ("context", "span", "token")

    def __init__(self, span: Any, context: Any) -> None:
        self.span = span
        self.context = context

    def __enter__(self) -> None:
        self.token = _attach(_Context({**self.context, _SPAN_KEY: self.span}))

    def __exit__(self, kind: Any, error: BaseException | None, traceback: Any) -> None:
        _detach(self.token)
        if error is not None:
            _failed(self.span, error)
        self.span.end()


class _WorkerCarrier:
    """What a runner's worker pool needs: the caller's ``traceparent`` per call, and the
    settings (and factory) its worker processes build their own tracer from."""

    factory = "dosirak.observability.tracing:WorkerTracing"

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings

    @staticmethod
    def traceparent() -> str | None:
        """The current span's W3C ``traceparent`` (the batch's), None unless it is sampled."""
        context = trace.get_current_span().get_span_context()
        if not context.trace_flags.sampled:  # an invalid context has no flags either
            return None
        return f"00-{context.trace_id:032x}-{context.span_id:016x}-01"


class WorkerTracing:
    """Inside a runner worker process: a span per call, a child of the span the call was made
    in (its ``traceparent`` crossed the transport), exported as the server exports its own."""

    def __init__(self, settings: dict[str, Any], index: int) -> None:
        import types

        # A runner worker's spans are one a batch: formatted here, no writer process for them.
        self.tracing = Tracing(types.SimpleNamespace(**settings), settings["service_name"],
                               offload_export=False)
        self.start = self.tracing.spans.start
        self.prefix = f"worker {settings['runner']}."
        self.index = index
        self.pid = os.getpid()

    def call(self, traceparent: str, method: str, function: Any, args: Any,
             kwargs: Any) -> Any:
        """``function(*args, **kwargs)`` in a span whose parent is ``traceparent``."""
        parent = _span_of(_PROPAGATOR.extract({"traceparent": traceparent})).get_span_context()
        span = self.start(self.prefix + method, parent, _SERVER,
                          {"dosirak.runner.worker": self.index, "process.pid": self.pid})
        with _Current(span, _ROOT):
            return function(*args, **kwargs)

    def shutdown(self) -> None:
        self.tracing.shutdown()


class _TracedAccessLog(AccessLog):
    """Writes each line with the trace id of its request, and notes the request's status on
    the request's span: the traffic layer calls it once per request, inside the span, with
    the final status (a 504 of the deadline, a 499 of a client that left included), so the
    span needs no wrapper around ``send`` to learn it."""

    def record(self, request_id: str, method: str, path: str, status: int, latency_ms: float,
               request_size: int | None = None, response_size: int | None = None,
               trace_id: str | None = None) -> None:
        span = _REQUEST_SPAN.get()
        if span is not None:
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(_ERROR)
            if trace_id is None and self.logger.isEnabledFor(_INFO):
                trace_id = f"{span.get_span_context()[0]:032x}"
        super().record(request_id, method, path, status, latency_ms, request_size,
                       response_size, trace_id)
