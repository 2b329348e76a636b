"""A span exporter that writes one compact JSON object per span (``tracing.exporter: console``).

    >>> exporter = SpanLines("spans.jsonl")       # or SpanLines(None): standard output
    >>> provider.add_span_processor(BatchSpanProcessor(exporter))

Each line has the fields of the SDK's ``ReadableSpan.to_json()`` (name, context, kind,
parent_id, start_time, end_time, status, attributes, events, links, resource) on one line, so
tools that read the SDK's console output read these too, and ``jq -c`` or a log shipper can take
the file line by line. The SDK's ``ConsoleSpanExporter`` builds each span's JSON through
``to_json()`` with the standard library, indented over ~25 lines: that cost ~15 us a span on the
exporting thread, which holds the GIL the event loop needs. Here orjson encodes a plain dict
(the resource, the same for every span, is encoded once) and a batch of spans leaves in one
``write`` on a file opened with ``O_APPEND``, so the lines of several processes (API workers,
runner workers) appending to one file never interleave.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import orjson
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

from dosirak.observability.spans import UNSET_STATUS, RecordedSpan

_dumps = orjson.dumps
_NEWLINE = orjson.OPT_APPEND_NEWLINE
# What to_json() spells for each kind and status, computed once and found by the member's id
# (hashing an Enum member runs Python code).
_KINDS = {id(kind): str(kind) for kind in SpanKind}
_STATUSES = {id(code): {"status_code": code.name} for code in StatusCode}
_UNSET_CODE = id(StatusCode.UNSET)
_LINK = b'{"context":{"trace_id":"0x%032x","span_id":"0x%016x","trace_state":"[]"},' \
        b'"attributes":null}'


class SpanLines(SpanExporter):
    """Spans as JSON lines, appended to ``path`` (standard output when None)."""

    #: ``SpanRecorder`` hands it dosirak's spans as they are (no SDK ``ReadableSpan`` made).
    reads_recorded_spans = True

    def __init__(self, path: str | None) -> None:
        self._fd = -1 if path is None else os.open(
            path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        self._lock = threading.Lock()
        self._resources: dict[int, orjson.Fragment] = {}
        self._second = -1
        self._second_text = ""
        self._second_bytes = b""
        # Line templates of the common span (no events, status description or trace state;
        # links only without attributes or trace state), by name, kind, status, root or not,
        # and resource: the constant parts encoded once, the rest put in with one %-format.
        self._templates: dict[tuple[Any, ...], bytes] = {}

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        """Write ``spans`` (finished ``ReadableSpan`` objects), one line each."""
        line = self._line
        recorded = self._recorded_line
        data = b"".join([(type(span) is RecordedSpan and recorded(span)) or line(span)
                         for span in spans])
        with self._lock:
            if self._fd < 0:
                stream = sys.stdout
                stream.write(data.decode())
                stream.flush()
                return SpanExportResult.SUCCESS
            view = memoryview(data)
            while view:  # a regular file takes it all at once; a pipe may not
                view = view[os.write(self._fd, view):]
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # every export is written through

    def _recorded_line(self, span: RecordedSpan) -> bytes | None:
        """The line of one of dosirak's own spans, read from its fields (no properties), when
        it has the common shape; None otherwise (``_line`` writes it)."""
        if span._status is not UNSET_STATUS or span._events is not None:
            return None
        context = span._context
        state = context[4]
        if state is not DEFAULT_TRACE_STATE and state:
            return None
        links = b""
        if span._links:  # a batch's span: one link per call it served
            parts = []
            for link in span._links:
                linked = link.context
                state = linked[4]
                if link.attributes is not None or (state is not DEFAULT_TRACE_STATE and state):
                    return None
                parts.append(_LINK % (linked[0], linked[1]))
            links = b",".join(parts)
        parent = span._parent
        resource = span._recorder.resource
        key = (span._name, id(span._kind), _UNSET_CODE, parent is None, id(resource))
        template = self._templates.get(key) or self._template(key, span)
        if template is None:
            return None
        start = span._start // 1000
        end = span._end // 1000  # type: ignore[operator]  # queued spans have ended
        second = start // 1_000_000
        if second != self._second:
            self._time(start * 1000)
        start_prefix = self._second_bytes
        end_second = end // 1_000_000
        if end_second != self._second:
            self._time(end * 1000)
        attributes = _dumps(span._attributes, default=str)
        if parent is None:
            return template % (context[0], context[1], start_prefix, start - second * 1_000_000,
                               self._second_bytes, end - end_second * 1_000_000, attributes,
                               links)
        return template % (context[0], context[1], parent[1], start_prefix,
                           start - second * 1_000_000, self._second_bytes,
                           end - end_second * 1_000_000, attributes, links)

    def _line(self, span: Any) -> bytes:
        context = span.context
        parent = span.parent
        status = span.status
        if not (status.description or context.trace_state or span.events or span.links):
            key = (span.name, id(span.kind), id(status.status_code), parent is None,
                   id(span.resource))
            template = self._templates.get(key) or self._template(key, span)
            if template is not None:
                start = span.start_time // 1000
                end = span.end_time // 1000
                second = start // 1_000_000
                if second != self._second:
                    self._time(start * 1000)
                start_prefix = self._second_bytes
                end_second = end // 1_000_000
                if end_second != self._second:
                    self._time(end * 1000)
                attributes = span.attributes
                attributes = _dumps(attributes if type(attributes) is dict else
                                    _plain(attributes), default=str)
                if parent is None:
                    return template % (context.trace_id, context.span_id, start_prefix,
                                       start - second * 1_000_000, self._second_bytes,
                                       end - end_second * 1_000_000, attributes, b"")
                return template % (context.trace_id, context.span_id, parent.span_id,
                                   start_prefix, start - second * 1_000_000, self._second_bytes,
                                   end - end_second * 1_000_000, attributes, b"")
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

    def _template(self, key: tuple[Any, ...], span: Any) -> bytes | None:
        """The line of a common span with %-format fields for ids, times and attributes."""
        if len(self._templates) >= 256:  # names made of paths clients chose: do not grow
            return None

        def constant(value: Any) -> bytes:
            return _dumps(value, default=str).replace(b"%", b"%%")

        parent = b"null" if key[3] else b'"0x%016x"'
        template = (
            b'{"name":' + constant(span.name) +
            b',"context":{"trace_id":"0x%032x","span_id":"0x%016x","trace_state":"[]"},'
            b'"kind":' + constant(_KINDS[id(span.kind)]) + b',"parent_id":' + parent +
            b',"start_time":"%s%06dZ","end_time":"%s%06dZ","status":' +
            constant(_STATUSES[id(span.status.status_code)]) +
            b',"attributes":%s,"events":[],"links":[%s],"resource":' +
            constant(self._resource(span.resource)) + b"}\n")
        self._templates[key] = template
        return template

    def _resource(self, resource: Any) -> orjson.Fragment:
        """The resource's JSON, encoded once per resource (one per provider)."""
        encoded = self._resources.get(id(resource))
        if encoded is None:
            encoded = orjson.Fragment(_dumps({"attributes": dict(resource.attributes),
                                              "schema_url": resource.schema_url}, default=str))
            self._resources = {**self._resources, id(resource): encoded}
        return encoded

    def _time(self, nanoseconds: int | None) -> str | None:
        """ISO 8601 in UTC with microseconds, as the SDK writes it; the date and time of the
        current second are formatted once."""
        if nanoseconds is None:
            return None
        microseconds = nanoseconds // 1000
        second = microseconds // 1_000_000
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
            self._second_bytes = self._second_text.encode()
            self._second = second
        return f"{self._second_text}{microseconds - second * 1_000_000:06d}Z"


def _context(context: Any) -> dict[str, str]:
    state = context.trace_state
    return {"trace_id": f"0x{context.trace_id:032x}", "span_id": f"0x{context.span_id:016x}",
            "trace_state": repr(state) if state else "[]"}


def _plain(attributes: Any) -> dict[str, Any] | None:
    """Attributes as a dict orjson encodes (as ``to_json()`` writes them: None stays None)."""
    return attributes if attributes is None or type(attributes) is dict else dict(attributes)
