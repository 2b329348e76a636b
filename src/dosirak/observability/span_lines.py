"""A span exporter that writes one compact JSON object per span (``tracing.exporter: console``).

    >>> exporter = SpanLines("spans.jsonl")       # or SpanLines(None): standard output
    >>> provider.add_span_processor(BatchSpanProcessor(exporter))
    >>> SpanLines("spans.jsonl", offload=True)    # lines formatted by a writer process

Each line has the fields of the SDK's ``ReadableSpan.to_json()`` (name, context, kind,
parent_id, start_time, end_time, status, attributes, events, links, resource) on one line, so
tools that read the SDK's console output read these too, and ``jq -c`` or a log shipper can take
the file line by line. The SDK's ``ConsoleSpanExporter`` builds each span's JSON through
``to_json()`` with the standard library, indented over ~25 lines: that cost ~15 us a span on the
exporting thread, which holds the GIL the event loop needs. Here orjson encodes a plain dict
(the resource, the same for every span, is encoded once) and a batch of spans leaves in one
``write`` on a file opened with ``O_APPEND``, so the lines of several processes (API workers,
runner workers) appending to one file never interleave. Spans of the common shape are packed
and formatted from a template (``span_writer.LineFormat``); with ``offload`` (an API worker
on a machine of more than one CPU), a writer process of its own formats and writes them
(``span_writer.SpanWriter``), and the exporting thread only packs them. Should the writer be
killed, the lines are formatted here again, with a warning.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import orjson
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

from dosirak.observability.span_writer import (
    IsoClock,
    LineFormat,
    LineSink,
    Packed,
    SpanWriter,
    WriterGone,
)
from dosirak.observability.spans import UNSET_STATUS, RecordedSpan

logger = logging.getLogger("dosirak.tracing")

_dumps = orjson.dumps
_NEWLINE = orjson.OPT_APPEND_NEWLINE
# What to_json() spells for each kind and status, computed once and found by the member's id
# (hashing an Enum member runs Python code).
_KINDS = {id(kind): str(kind) for kind in SpanKind}
_STATUSES = {id(code): {"status_code": code.name} for code in StatusCode}


class SpanLines(SpanExporter):
    """Spans as JSON lines, appended to ``path`` (standard output when None); with
    ``offload``, formatted and written by a writer process."""

    #: ``SpanRecorder`` hands it dosirak's spans as they are (no SDK ``ReadableSpan`` made).
    reads_recorded_spans = True

    def __init__(self, path: str | None, *, offload: bool = False) -> None:
        self._path = path
        self._sink = LineSink(path)
        self._lock = threading.Lock()
        self._offload = offload
        self._writer: SpanWriter | None = None
        self._clock = IsoClock()
        self._resources: dict[int, orjson.Fragment] = {}
        self._resource_texts: dict[int, bytes] = {}
        # Spans of one resource (the first recorded span's) are packed: its line format.
        self._packed_resource: Any = None
        self._format: LineFormat | None = None

    @property
    def writer_pid(self) -> int | None:
        """The writer process's id, while there is one."""
        return None if self._writer is None else self._writer.pid

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        """Write ``spans`` (dosirak's ``RecordedSpan``, or the SDK's ``ReadableSpan``)."""
        pack = self._pack
        line = self._line
        items: list[Any] = [(type(span) is RecordedSpan and pack(span)) or line(span)
                            for span in spans]
        with self._lock:
            if self._offload and self._send(items):
                return SpanExportResult.SUCCESS
            line_format = self._format
            self._sink.write(b"".join([
                item if type(item) is bytes else line_format.line(item)  # type: ignore[union-attr]
                for item in items]))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            self._sink.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # every export is written through (or handed to the writer)

    def _send(self, items: list[Any]) -> bool:
        """Hand ``items`` to the writer process (started on first use, and again in a forked
        process); False when there is none to take them, and from then on."""
        writer = self._writer
        try:
            if writer is None or writer.pid_of_parent != os.getpid():
                if self._packed_resource is None:
                    return False  # nothing packed yet: no resource to start a writer with
                writer = self._writer = SpanWriter(self._path,
                                                   self._resource_json(self._packed_resource))
            writer.send(items)
            return True
        except (WriterGone, OSError, ValueError) as error:
            # ValueError: marshal met an attribute value it cannot write (not a primitive).
            logger.warning("tracing: the span writer process failed (%s); spans are written "
                           "by this process from now on", error)
            self._offload = False
            if self._writer is not None:
                self._writer.close(timeout=5)
                self._writer = None
            return False

    def _pack(self, span: RecordedSpan) -> Packed | None:
        """A dosirak span of the common shape as a packed tuple, read from its fields (no
        properties); None for any other (``_line`` writes it)."""
        if span._status is not UNSET_STATUS or span._events is not None:
            return None
        context = span._context
        state = context[4]
        if state is not DEFAULT_TRACE_STATE and state:
            return None
        links: tuple[tuple[int, int], ...] = ()
        if span._links:  # a batch's span: one link per call it served
            pairs = []
            for link in span._links:
                linked = link.context
                state = linked[4]
                if link.attributes is not None or (state is not DEFAULT_TRACE_STATE and state):
                    return None
                pairs.append((linked[0], linked[1]))
            links = tuple(pairs)
        resource = span._recorder.resource
        if resource is not self._packed_resource:
            if self._packed_resource is not None:
                return None  # a second resource: its spans get whole lines
            self._packed_resource = resource
            self._format = LineFormat(self._resource_json(resource))
        parent = span._parent
        return (span._name, _KINDS[id(span._kind)], context[0], context[1],
                None if parent is None else parent[1], span._start,
                span._end, span._attributes, links)  # type: ignore[return-value]

    def _line(self, span: Any) -> bytes:
        """The line of any span, as a dict orjson encodes."""
        context = span.context
        parent = span.parent
        status = span.status
        if status.description:
            status_line = {"status_code": status.status_code.name,
                           "description": status.description}
        else:
            status_line = _STATUSES[id(status.status_code)]
        state = context.trace_state
        events = span.events
        links = span.links
        attributes = span.attributes
        time = self._time
        line = {
            "name": span.name,
            "context": {"trace_id": f"0x{context.trace_id:032x}",
                        "span_id": f"0x{context.span_id:016x}",
                        "trace_state": repr(state) if state else "[]"},
            "kind": _KINDS[id(span.kind)],
            "parent_id": None if parent is None else f"0x{parent.span_id:016x}",
            "start_time": time(span.start_time),
            "end_time": time(span.end_time),
            "status": status_line,
            "attributes": attributes if type(attributes) is dict else _plain(attributes),
            "events": [{"name": event.name, "timestamp": time(event.timestamp),
                        "attributes": _plain(event.attributes)}
                       for event in events] if events else [],
            "links": [{"context": _context(link.context), "attributes": _plain(link.attributes)}
                      for link in links] if links else [],
            "resource": self._resources.get(id(span.resource)) or
            self._resource(span.resource),
        }
        return _dumps(line, default=str, option=_NEWLINE)

    def _resource_json(self, resource: Any) -> bytes:
        """The resource's JSON, encoded once per resource (one per provider)."""
        encoded = self._resource_texts.get(id(resource))
        if encoded is None:
            encoded = _dumps({"attributes": dict(resource.attributes),
                              "schema_url": resource.schema_url}, default=str)
            self._resource_texts = {**self._resource_texts, id(resource): encoded}
        return encoded

    def _resource(self, resource: Any) -> orjson.Fragment:
        encoded = self._resources.get(id(resource))
        if encoded is None:
            encoded = orjson.Fragment(self._resource_json(resource))
            self._resources = {**self._resources, id(resource): encoded}
        return encoded

    def _time(self, nanoseconds: int | None) -> str | None:
        return None if nanoseconds is None else self._clock.time_text(nanoseconds)


def _context(context: Any) -> dict[str, str]:
    state = context.trace_state
    return {"trace_id": f"0x{context.trace_id:032x}", "span_id": f"0x{context.span_id:016x}",
            "trace_state": repr(state) if state else "[]"}


def _plain(attributes: Any) -> dict[str, Any] | None:
    """Attributes as a dict orjson encodes (as ``to_json()`` writes them: None stays None)."""
    return attributes if attributes is None or type(attributes) is dict else dict(attributes)
