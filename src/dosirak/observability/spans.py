"""The spans dosirak records: cheap to make on the request path, exported off it.

    >>> recorder = SpanRecorder([SpanLines("spans.jsonl")], resource)
    >>> maker = SpanMaker(recorder, sample_rate=1.0)
    >>> span = maker.start("POST /classify", parent=None, kind=SpanKind.SERVER)
    >>> span.end()                                    # queued; a thread exports it

Why not the SDK's tracer: its ``start_span`` and ``end`` cost ~15 us a span (attribute
cleaning under a lock, bounded lists, span processors, the batch processor's bookkeeping),
and a served request has two spans of its own: that alone cost a small service more than
half its throughput. A ``RecordedSpan`` is a plain object with the OpenTelemetry API's
``Span`` methods, so code inside an API sees it as the current span and may add
attributes, events, a status or child spans of its own tracer; ``end`` appends it to a
deque. The recorder's thread turns spans into the SDK's ``ReadableSpan`` for the SDK's
exporters (OTLP, the in-memory one in tests), and hands them as they are to exporters that
read them directly (``SpanLines``).

Sampling is the SDK's ``ParentBased(TraceIdRatioBased(rate))``: a span with a parent keeps
the parent's decision; a root is sampled when the low 64 bits of its random trace id fall
under ``rate`` of their range. An unsampled span is a ``NonRecordingSpan`` that carries the
decision to its children and is never queued.
"""

from __future__ import annotations

import atexit
import logging
import random
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterable, Sequence
from types import MappingProxyType
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

logger = logging.getLogger("dosirak.tracing")

_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)
_NOT_SAMPLED = trace.TraceFlags(trace.TraceFlags.DEFAULT)
UNSET_STATUS = Status(StatusCode.UNSET)  # a span's status until one is set (exporters test it)
_LOW_64 = (1 << 64) - 1
_INTERNAL = SpanKind.INTERNAL
_SCOPE = InstrumentationScope("dosirak")
_ATTRIBUTE_TYPES = (str, bool, int, float)
_PRIMITIVES = frozenset(_ATTRIBUTE_TYPES)
_time_ns = time.time_ns
_bits = random.getrandbits  # the SDK's RandomIdGenerator draws from the same generator
_tuple_new = tuple.__new__


def _layout_holds() -> bool:
    """Whether ``SpanContext`` is the tuple its properties read (trace id, span id, remote,
    flags, state, valid): ``start`` builds the ids it drew into one directly (they are valid
    by construction, so the checks of ``SpanContext.__new__`` would find nothing), and the
    request path and the exporters read the fields by index."""
    flags = trace.TraceFlags(trace.TraceFlags.SAMPLED)
    context = SpanContext(3, 5, False, flags, DEFAULT_TRACE_STATE)
    return (tuple(context) == (3, 5, False, flags, DEFAULT_TRACE_STATE, True)
            and context.trace_id == 3 and context.span_id == 5 and context.is_valid
            and context.trace_flags is flags and context.trace_state is DEFAULT_TRACE_STATE)


if not _layout_holds():  # pragma: no cover - a future OpenTelemetry API changed its layout
    raise ImportError("dosirak's tracing does not know this opentelemetry-api's SpanContext "
                      "layout: install the version dosirak[tracing] pins")


class SpanMaker:
    """Starts spans: sampled ones are ``RecordedSpan``, the others carry the decision only."""

    def __init__(self, recorder: SpanRecorder, sample_rate: float) -> None:
        self.recorder = recorder
        self._bound = round(sample_rate * (_LOW_64 + 1))  # as TraceIdRatioBased computes it

    def start(self, name: str, parent: SpanContext | None, kind: SpanKind = SpanKind.INTERNAL,
              attributes: dict[str, Any] | None = None,
              links: Sequence[trace.Link] = (), sampled: bool | None = None) -> Any:
        """A started span; ``parent`` None (or invalid) starts a trace. ``sampled``: the
        decision, when the caller made it (None: the parent's, or the sample rate's)."""
        if parent is not None and parent[5]:  # valid
            trace_id = parent[0]
            if sampled is None:
                sampled = bool(parent[3] & 1)
            state = parent[4]
        else:
            parent = None
            trace_id = _bits(128) or 1
            if sampled is None:
                sampled = (trace_id & _LOW_64) < self._bound
            state = DEFAULT_TRACE_STATE
        context = _tuple_new(SpanContext, (trace_id, _bits(64) or 1, False,
                                           _SAMPLED if sampled else _NOT_SAMPLED, state, True))
        if not sampled:
            return NonRecordingSpan(context)
        return RecordedSpan(name, context, parent, kind, attributes, links, self.recorder)


    def root(self, name: str, kind: SpanKind, attributes: dict[str, Any]) -> Any:
        """``start(name, None, kind, attributes)``: a span starting a trace, sampled at the
        sample rate (an HTTP request without a ``traceparent``)."""
        trace_id = _bits(128) or 1
        if (trace_id & _LOW_64) >= self._bound:
            return NonRecordingSpan(_tuple_new(SpanContext, (
                trace_id, _bits(64) or 1, False, _NOT_SAMPLED, DEFAULT_TRACE_STATE, True)))
        return RecordedSpan(name, _tuple_new(SpanContext, (
            trace_id, _bits(64) or 1, False, _SAMPLED, DEFAULT_TRACE_STATE, True)),
            None, kind, attributes, (), self.recorder)

    def child(self, name: str, parent: SpanContext) -> RecordedSpan:
        """``start(name, parent)`` of a valid, sampled ``parent`` (the caller checked): an
        internal span without attributes or links yet, the one an API call gets."""
        return RecordedSpan(name, _tuple_new(SpanContext, (parent[0], _bits(64) or 1, False,
                                                           _SAMPLED, parent[4], True)),
                            parent, _INTERNAL, None, (), self.recorder)


class RecordedSpan(trace.Span):
    """A sampled span: the OpenTelemetry API's ``Span``, readable as the SDK's
    ``ReadableSpan`` reads (``name``, ``context``, ``parent``, ``attributes``...)."""

    __slots__ = ("_attributes", "_context", "_end", "_events", "_kind", "_links", "_name",
                 "_parent", "_recorder", "_start", "_status")

    def __init__(self, name: str, context: SpanContext, parent: SpanContext | None,
                 kind: SpanKind, attributes: dict[str, Any] | None,
                 links: Sequence[trace.Link], recorder: SpanRecorder) -> None:
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._attributes = attributes if attributes is not None else {}
        self._links = links
        self._events: list[Event] | None = None
        self._status = UNSET_STATUS
        self._recorder = recorder
        self._end: int | None = None
        self._start = _time_ns()

    # ----- the API's Span --------------------------------------------------------------------

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end is None

    def end(self, end_time: int | None = None) -> None:
        if self._end is None:
            self._end = end_time if end_time is not None else _time_ns()
            self._recorder.add(self)

    def set_attribute(self, key: str, value: Any) -> None:
        if self._end is None:
            if type(value) in _PRIMITIVES and type(key) is str and key:  # the common case
                self._attributes[key] = value
                return
            value = _attribute(key, value)
            if value is not None:
                self._attributes[key] = value

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(self, name: str, attributes: dict[str, Any] | None = None,
                  timestamp: int | None = None) -> None:
        if self._end is None:
            if self._events is None:
                self._events = []
            self._events.append(Event(name, _attributes(attributes),
                                      timestamp if timestamp is not None else _time_ns()))

    def add_link(self, context: SpanContext, attributes: dict[str, Any] | None = None) -> None:
        if self._end is None and context.is_valid:
            self._links = [*self._links, trace.Link(context, _attributes(attributes))]

    def update_name(self, name: str) -> None:
        if self._end is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        # As the SDK: OK is final, and UNSET never replaces a status.
        if self._end is not None or self._status.status_code is StatusCode.OK:
            return
        if not isinstance(status, Status):
            status = Status(status, description)
        if status.status_code is not StatusCode.UNSET:
            self._status = status

    def record_exception(self, exception: BaseException,
                         attributes: dict[str, Any] | None = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        kind = type(exception)
        module = kind.__module__
        fields = {
            "exception.type": kind.__qualname__ if module in ("builtins", "__main__")
            else f"{module}.{kind.__qualname__}",
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            fields.update(attributes)
        self.add_event("exception", fields, timestamp)

    # ----- what exporters read (the SDK's ReadableSpan's names) ------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def context(self) -> SpanContext:
        return self._context

    @property
    def parent(self) -> SpanContext | None:
        return self._parent

    @property
    def kind(self) -> SpanKind:
        return self._kind

    @property
    def start_time(self) -> int:
        return self._start

    @property
    def end_time(self) -> int | None:
        return self._end

    @property
    def status(self) -> Status:
        return self._status

    @property
    def attributes(self) -> dict[str, Any]:
        return self._attributes

    @property
    def events(self) -> Sequence[Event]:
        return self._events or ()

    @property
    def links(self) -> Sequence[trace.Link]:
        return self._links

    @property
    def resource(self) -> Any:
        return self._recorder.resource

    def readable(self) -> ReadableSpan:
        """The SDK's form of the finished span, for the SDK's exporters."""
        return ReadableSpan(
            name=self._name, context=self._context, parent=self._parent,
            resource=self._recorder.resource, attributes=MappingProxyType(self._attributes),
            events=tuple(self.events), links=tuple(self._links), kind=self._kind,
            status=self._status, start_time=self._start, end_time=self._end,
            instrumentation_scope=_SCOPE)

    def __repr__(self) -> str:
        return f"RecordedSpan({self._name!r}, trace {self._context.trace_id:032x})"


def _attribute(key: Any, value: Any) -> Any:
    """An attribute value as OpenTelemetry allows it (a primitive, or a sequence of one type
    of primitive, kept as a tuple); None, with a warning, for anything else."""
    if isinstance(value, _ATTRIBUTE_TYPES) and isinstance(key, str) and key:
        return value
    if isinstance(value, (list, tuple)) and isinstance(key, str) and key:
        kinds = {type(item) for item in value if item is not None}
        if len(kinds) <= 1 and kinds <= set(_ATTRIBUTE_TYPES):
            return tuple(value)
    logger.warning("span attribute %r dropped: a value must be a str, bool, int or float, or a "
                   "sequence of one of them, got %s", key, type(value).__name__)
    return None


def _attributes(attributes: dict[str, Any] | None) -> dict[str, Any]:
    kept = {}
    for key, value in (attributes or {}).items():
        value = _attribute(key, value)
        if value is not None:
            kept[key] = value
    return kept


class SpanRecorder:
    """Finished spans, queued by ``add`` and exported in batches by a thread of its own.

    The thread wakes every ``interval`` seconds, or as soon as ``batch`` spans wait. At most
    ``max_queue`` spans wait; past that, spans are dropped and counted (one warning a minute),
    so a collector that is down costs memory up to that bound and nothing else.
    """

    def __init__(self, exporters: Iterable[Any], resource: Any, *, interval: float = 0.5,
                 batch: int = 512, max_queue: int = 32_768) -> None:
        self.resource = resource
        self._exporters = list(exporters)
        self._queue: deque[RecordedSpan] = deque()
        self._interval = interval
        self._batch = batch
        self._max_queue = max_queue
        self._wake = threading.Event()
        self._stopping = False
        self._export_lock = threading.Lock()
        self.dropped = 0
        self._warned = 0.0
        self._thread = threading.Thread(target=self._run, name="dosirak-spans", daemon=True)
        self._thread.start()
        # A process that ends without stopping its server still exports what it recorded.
        atexit.register(self.shutdown)

    def add_exporter(self, exporter: Any) -> None:
        """Also export to ``exporter`` (an SDK ``SpanExporter``)."""
        with self._export_lock:
            self._exporters = [*self._exporters, exporter]

    def add(self, span: RecordedSpan) -> None:
        """Queue a finished span (the request path: a length check and an append)."""
        queue = self._queue
        size = len(queue)
        if size >= self._max_queue:
            self._drop()
            return
        queue.append(span)
        if size + 1 == self._batch:
            self._wake.set()

    def flush(self) -> None:
        """Export every span queued so far, now, in the calling thread."""
        self._export_all()

    def shutdown(self) -> None:
        """Export what is left, stop the thread and the exporters."""
        if self._stopping:
            return
        self._stopping = True
        atexit.unregister(self.shutdown)
        self._wake.set()
        self._thread.join(30)
        self._export_all()
        for exporter in self._exporters:
            try:
                exporter.shutdown()
            except Exception:
                logger.exception("span exporter %r failed to shut down", exporter)

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._interval)
            self._wake.clear()
            self._export_all()

    def _export_all(self) -> None:
        queue = self._queue
        with self._export_lock:
            while queue:
                popleft = queue.popleft
                spans = [popleft() for _ in range(min(len(queue), self._batch))]
                readable = None
                for exporter in self._exporters:
                    try:
                        if getattr(exporter, "reads_recorded_spans", False):
                            exporter.export(spans)
                        else:
                            if readable is None:
                                readable = [span.readable() for span in spans]
                            exporter.export(readable)
                    except Exception:
                        logger.exception("span exporter %r failed; %d spans lost for it",
                                         exporter, len(spans))

    def _drop(self) -> None:
        self.dropped += 1
        now = time.monotonic()
        if now - self._warned > 60:
            self._warned = now
            logger.warning("tracing: %d spans dropped so far: more than %d waited for the "
                           "exporter (is the collector reachable?)", self.dropped,
                           self._max_queue)
