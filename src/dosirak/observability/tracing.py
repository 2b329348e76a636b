"""OpenTelemetry tracing of a service (``tracing:`` in the configuration; ``dosirak[tracing]``).

    >>> tracing = Tracing(config.tracing, service_name="iris_classifier")
    >>> app.handler = tracing.http(app.handler)      # a span per HTTP request
    >>> api.callable = tracing.api_span(api.name, api.callable, api.is_async)
    >>> tracing.instrument_batches(svc)               # a span per runner batch

Spans: one per HTTP request (``SERVER``, continuing an incoming W3C ``traceparent``), one per API
call inside it, and one per runner batch, which starts a trace of its own with a link to the
API call of every request whose rows it carried (one batch, many parents). With placement
``process``, each call into a runner worker process gets a span there too, a child of the batch
span: the call frame carries the batch span's W3C ``traceparent`` across the transport, and the
worker exports its spans as the server does (``WorkerTracing``). The access log line
of a traced request carries its trace id. Spans go to an OTLP/HTTP collector (``exporter:
otlp``) or to the console or a file (``console``), in batches, off the request path; the
sampler keeps ``sample_rate`` of the traces (an incoming trace's decision is kept).

This module is imported only when tracing is on: with it off, nothing of OpenTelemetry is
imported and the request path has nothing extra to do.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from typing import Any

from dosirak.exceptions import MissingDependency
from dosirak.observability.access_log import AccessLine, AccessLog

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # pragma: no cover - the message says how to fix it
    raise MissingDependency("tracing needs OpenTelemetry: pip install 'dosirak[tracing]'") \
        from None

_PROPAGATOR = TraceContextTextMapPropagator()
_SERVER = trace.SpanKind.SERVER
_ROOT = otel_context.Context()


def _getter_items(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {key.decode("latin-1"): value.decode("latin-1") for key, value in headers
            if key in (b"traceparent", b"tracestate")}


class Tracing:
    """The tracer provider of one server, and the wrappers that make its spans."""

    def __init__(self, config: Any, service_name: str) -> None:
        service_name = config.service_name or service_name
        #: What a runner worker process needs to export its spans the same way.
        self.settings = {"exporter": config.exporter, "endpoint": config.endpoint,
                         "sample_rate": config.sample_rate, "service_name": service_name,
                         "console_file": config.console_file}
        resource = Resource.create({"service.name": service_name})
        sampler = ParentBased(TraceIdRatioBased(config.sample_rate))
        self.provider = TracerProvider(resource=resource, sampler=sampler)
        self._file = None
        if config.exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter: Any = OTLPSpanExporter(endpoint=config.endpoint)
        elif config.console_file:
            self._file = open(config.console_file, "a", encoding="utf-8")  # noqa: SIM115
            exporter = ConsoleSpanExporter(out=self._file)
        else:
            exporter = ConsoleSpanExporter(out=sys.stdout)
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("dosirak")

    def shutdown(self) -> None:
        """Export what is left and stop."""
        self.provider.shutdown()
        if self._file is not None:
            self._file.close()

    # ----- HTTP -----------------------------------------------------------------------------

    def http(self, app: Any) -> Any:
        """``app`` with a span around each HTTP request (put it outside the traffic layer, so
        that the access line is written inside the span)."""
        tracer = self.tracer

        async def traced(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            parent = _PROPAGATOR.extract(_getter_items(scope["headers"]))
            method = scope["method"]
            path = scope["path"]
            with tracer.start_as_current_span(
                    f"{method} {path}", context=parent, kind=_SERVER,
                    attributes={"http.request.method": method, "url.path": path}) as span:

                async def noted(message: dict[str, Any]) -> None:
                    if message["type"] == "http.response.start":
                        status = message["status"]
                        span.set_attribute("http.response.status_code", status)
                        if status >= 500:
                            span.set_status(trace.StatusCode.ERROR)
                    await send(message)

                await app(scope, receive, noted)

        return traced

    def access_log(self) -> AccessLog:
        """An access log whose lines carry the trace id of the request."""
        return _TracedAccessLog()

    # ----- APIs and batches -----------------------------------------------------------------

    def instrument_batches(self, svc: Any) -> None:
        """Give every batching dispatcher of ``svc`` (runner methods and batchable APIs) a
        span per batch; call after the service started."""
        for runner in svc.runners:
            for name, method in runner.methods.items():
                if method.dispatcher is not None:
                    method.dispatcher.tracer = _BatchTracer(self.tracer,
                                                            f"{runner.name}.{name}")
        for dispatcher in getattr(svc, "_dispatchers", []):
            dispatcher.tracer = _BatchTracer(self.tracer, dispatcher.name)
        carrier = _WorkerCarrier(self.settings)
        for runner in svc.runners:
            runner.trace_workers(carrier)  # placement process: a span per call in the worker

    def api_span(self, name: str, function: Any, is_async: bool) -> Any:
        """``function`` (an API's callable) in a span per call."""
        tracer = self.tracer
        span_name = f"api {name}"

        if is_async:
            @functools.wraps(function)
            async def traced_async(*args: Any, **kwargs: Any) -> Any:
                with tracer.start_as_current_span(span_name):
                    return await function(*args, **kwargs)

            assert inspect.iscoroutinefunction(traced_async)
            return traced_async

        @functools.wraps(function)
        def traced(*args: Any, **kwargs: Any) -> Any:
            with tracer.start_as_current_span(span_name):
                return function(*args, **kwargs)

        return traced


class _BatchTracer:
    """What a dispatcher calls: the caller's span context at submit, a span around a batch."""

    def __init__(self, tracer: Any, label: str) -> None:
        self.tracer = tracer
        self.name = f"batch {label}"

    def caller(self) -> Any:
        """The span context of the call being submitted (its API call's span)."""
        context = trace.get_current_span().get_span_context()
        return context if context.is_valid else None

    async def run(self, callers: list[Any], rows: int, execute: Any, args: Any,
                  kwargs: Any) -> Any:
        """``execute(args, kwargs)`` inside a span linked to every caller's span."""
        links = [trace.Link(context) for context in callers if context is not None]
        with self.tracer.start_as_current_span(
                self.name, context=_ROOT, links=links,
                attributes={"dosirak.batch.rows": rows, "dosirak.batch.calls": len(callers)}):
            return await execute(args, kwargs)


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
        import os
        import types

        self.tracing = Tracing(types.SimpleNamespace(**settings), settings["service_name"])
        self.tracer = self.tracing.tracer
        self.prefix = f"worker {settings['runner']}."
        self.attributes = {"dosirak.runner.worker": index, "process.pid": os.getpid()}

    def call(self, traceparent: str, method: str, function: Any, args: Any,
             kwargs: Any) -> Any:
        """``function(*args, **kwargs)`` in a span whose parent is ``traceparent``."""
        parent = _PROPAGATOR.extract({"traceparent": traceparent})
        with self.tracer.start_as_current_span(self.prefix + method, context=parent,
                                               kind=_SERVER, attributes=self.attributes):
            return function(*args, **kwargs)

    def shutdown(self) -> None:
        self.tracing.shutdown()


class _TracedLine(AccessLine):
    __slots__ = ("trace_id",)

    def __init__(self, trace_id: str, *fields: Any) -> None:
        super().__init__(*fields)
        self.trace_id = trace_id

    def fields(self) -> dict[str, Any]:
        return {**super().fields(), "trace_id": self.trace_id}

    def __str__(self) -> str:
        return f"{super().__str__()} trace_id={self.trace_id}"


class _TracedAccessLog(AccessLog):
    """Writes each line with the current span's trace id (the request's, written in it)."""

    def record(self, request_id: str, method: str, path: str, status: int, latency_ms: float,
               request_size: int | None = None, response_size: int | None = None) -> None:
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        context = trace.get_current_span().get_span_context()
        trace_id = trace.format_trace_id(context.trace_id) if context.is_valid else "-"
        line = _TracedLine(trace_id, request_id, method, path, status, latency_ms, request_size,
                           response_size)
        logger.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 0, line, None,
                                        None))
