"""The console exporter's lines, formatted here or in a writer process of their own.

    >>> line_format = LineFormat(resource_json)
    >>> line_format.line(("POST /classify", "SpanKind.SERVER", trace_id, span_id, None,
    ...                   start_ns, end_ns, {"http.request.method": "POST"}, ()))
    >>> writer = SpanWriter("spans.jsonl", resource_json)  # a child: python -m <this module>
    >>> writer.send([packed, packed, b"<a line formatted already>\\n"])

A span of the common shape (status unset, no events, no trace state, links without attributes)
travels as a *packed* tuple: name, kind, trace id, span id, parent span id (None for a root),
start and end in nanoseconds, attributes, and the (trace id, span id) of each link. Its line is
a template of the name, kind, root-or-not and resource, with the rest put in by one %-format.

Formatting is most of what tracing costs a small service: ~1.2 us a span, on the exporting
thread of the API worker, which holds the GIL the event loop needs. ``SpanWriter`` moves it to
a child process: the exporting thread packs its spans (~0.2 us each) and writes them to the
child's standard input as ``marshal`` frames (a 4-byte length, then the data); the child formats
and appends them to the file. Only the parent that started it writes to that pipe (it is not a
network peer). The child runs in a session of its own (a terminal's Ctrl-C does not reach it)
and ignores SIGINT and SIGTERM: it ends when its input does, after writing what it got, so a
parent that stops or dies (even SIGKILLed) leaves no writer behind and loses no span it handed
over. A writer killed itself loses the lines it had not written yet; the parent finds its pipe
closed at the next batch and writes the lines itself from then on.

This module imports no OpenTelemetry: the writer process starts in a few tens of milliseconds.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import signal
import struct
import subprocess
import sys
import time
from typing import Any

import orjson

_dumps = orjson.dumps
_LENGTH = struct.Struct("<I")
_LINK = b'{"context":{"trace_id":"0x%032x","span_id":"0x%016x","trace_state":"[]"},' \
        b'"attributes":null}'
_MAX_TEMPLATES = 256  # names made of paths clients chose: the cache does not grow past this

#: A packed span: (name, kind, trace id, span id, parent span id or None, start ns, end ns,
#: attributes, links as (trace id, span id) pairs).
Packed = tuple[str, str, int, int, "int | None", int, int, dict[str, Any],
               tuple[tuple[int, int], ...]]


class IsoClock:
    """Times as the SDK's ``to_json()`` writes them: ISO 8601 in UTC with microseconds; the
    date and time of the current second are formatted once."""

    def __init__(self) -> None:
        self._second = -1
        self.second_text = ""
        self._second_bytes = b""

    def time_text(self, nanoseconds: int) -> str:
        microseconds = nanoseconds // 1000
        second = microseconds // 1_000_000
        if second != self._second:
            self.second_text = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
            self._second_bytes = self.second_text.encode()
            self._second = second
        return f"{self.second_text}{microseconds - second * 1_000_000:06d}Z"


class LineFormat(IsoClock):
    """Lines of packed spans of one resource (its JSON given once)."""

    def __init__(self, resource_json: bytes) -> None:
        super().__init__()
        self.resource = orjson.Fragment(resource_json)
        self._resource_text = resource_json.replace(b"%", b"%%")
        self._templates: dict[tuple[str, str, bool], bytes] = {}

    def line(self, packed: Packed) -> bytes:
        name, kind, trace_id, span_id, parent, start, end, attributes, links = packed
        template = self._templates.get((name, kind, parent is None)) or \
            self._template(name, kind, parent is None)
        start //= 1000
        end //= 1000
        second = start // 1_000_000
        if second != self._second:
            self.time_text(start * 1000)
        start_prefix = self._second_bytes
        end_second = end // 1_000_000
        if end_second != self._second:
            self.time_text(end * 1000)
        link_text = b",".join([_LINK % link for link in links]) if links else b""
        if template is None:
            return self._plain_line(packed)
        if parent is None:
            return template % (trace_id, span_id, start_prefix, start - second * 1_000_000,
                               self._second_bytes, end - end_second * 1_000_000,
                               _dumps(attributes, default=str), link_text)
        return template % (trace_id, span_id, parent, start_prefix, start - second * 1_000_000,
                           self._second_bytes, end - end_second * 1_000_000,
                           _dumps(attributes, default=str), link_text)

    def _template(self, name: str, kind: str, root: bool) -> bytes | None:
        """The line of a packed span with %-format fields for ids, times, attributes and
        links; None once the cache is full."""
        if len(self._templates) >= _MAX_TEMPLATES:
            return None

        def constant(value: Any) -> bytes:
            return _dumps(value).replace(b"%", b"%%")

        template = (
            b'{"name":' + constant(name) +
            b',"context":{"trace_id":"0x%032x","span_id":"0x%016x","trace_state":"[]"},'
            b'"kind":' + constant(kind) + b',"parent_id":' +
            (b"null" if root else b'"0x%016x"') +
            b',"start_time":"%s%06dZ","end_time":"%s%06dZ","status":{"status_code":"UNSET"},'
            b'"attributes":%s,"events":[],"links":[%s],"resource":' + self._resource_text +
            b"}\n")
        self._templates[name, kind, root] = template
        return template

    def _plain_line(self, packed: Packed) -> bytes:
        name, kind, trace_id, span_id, parent, start, end, attributes, links = packed
        return _dumps({
            "name": name,
            "context": {"trace_id": f"0x{trace_id:032x}", "span_id": f"0x{span_id:016x}",
                        "trace_state": "[]"},
            "kind": kind,
            "parent_id": None if parent is None else f"0x{parent:016x}",
            "start_time": self.time_text(start), "end_time": self.time_text(end),
            "status": {"status_code": "UNSET"},
            "attributes": attributes, "events": [],
            "links": [{"context": {"trace_id": f"0x{linked_trace:032x}",
                                   "span_id": f"0x{linked_span:016x}", "trace_state": "[]"},
                       "attributes": None} for linked_trace, linked_span in links],
            "resource": self.resource,
        }, default=str, option=orjson.OPT_APPEND_NEWLINE)


class LineSink:
    """Appends lines to a file opened with ``O_APPEND`` (or to standard output): a batch in one
    ``write``, so the lines of several processes appending to one file never interleave."""

    def __init__(self, path: str | None) -> None:
        self._fd = -1 if path is None else os.open(
            path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)

    def write(self, data: bytes) -> None:
        if self._fd < 0:
            stream = sys.stdout
            stream.write(data.decode())
            stream.flush()
            return
        view = memoryview(data)
        while view:  # a regular file takes it all at once; a pipe may not
            view = view[os.write(self._fd, view):]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class WriterGone(Exception):
    """The writer process is not there any more (it was killed, or could not start)."""


class SpanWriter:
    """A child process that formats packed spans and appends their lines to ``path``
    (standard output when None)."""

    def __init__(self, path: str | None, resource_json: bytes) -> None:
        self.pid_of_parent = os.getpid()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "dosirak.observability.span_writer",
             "-" if path is None else path],
            # A session of its own: a terminal's Ctrl-C (sent to the foreground group) does not
            # reach it; it ends when its input does, after the worker's last spans.
            stdin=subprocess.PIPE, close_fds=True, start_new_session=True)
        assert self._process.stdin is not None
        self._fd = self._process.stdin.fileno()
        self._write_frame(resource_json)

    @property
    def pid(self) -> int:
        return self._process.pid

    def send(self, items: list[Any]) -> None:
        """Hand ``items`` (packed spans, or lines as bytes) to the writer; ``WriterGone`` when
        it is not there to take them (nothing of them was written then, or part of them)."""
        self._write_frame(marshal.dumps(items))

    def _write_frame(self, data: bytes) -> None:
        view = memoryview(_LENGTH.pack(len(data)) + data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except (BrokenPipeError, OSError) as error:
            raise WriterGone(str(error)) from None

    def close(self, timeout: float = 30.0) -> None:
        """End the writer's input and wait until it wrote everything and exited."""
        assert self._process.stdin is not None
        with contextlib.suppress(OSError):  # it was gone already
            self._process.stdin.close()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def main(argv: list[str]) -> None:
    """The writer process: frames from standard input, lines to the file in ``argv[0]``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when it ends: at EOF
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sink = LineSink(None if argv[0] == "-" else argv[0])
    fd = sys.stdin.fileno()
    line_format: LineFormat | None = None
    while True:
        head = _read_exactly(fd, _LENGTH.size)
        if head is None:
            break
        data = _read_exactly(fd, _LENGTH.unpack(head)[0])
        if data is None:
            break  # the parent died in the middle of a frame: what came whole is written
        if line_format is None:
            line_format = LineFormat(data)  # the first frame: the resource's JSON
            continue
        line = line_format.line
        sink.write(b"".join([item if type(item) is bytes else line(item)
                             for item in marshal.loads(data)]))
    sink.close()


if __name__ == "__main__":
    main(sys.argv[1:])
