"""Streamed answers as items: what a streaming API's chunks mean, by Content-Type.

The server (``dosirak.server.streaming``) sends text as UTF-8 chunks, other values as JSON
lines, and server-sent events when asked; ``StreamDecoder`` turns the bytes as they arrive
(split wherever the network split them) back into items: text pieces, JSON values, event data
strings, or raw bytes.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

from dosirak.exceptions import RemoteError


class StreamDecoder:
    """Feed it the bytes of a streamed answer; it gives back the items they complete."""

    def __init__(self, content_type: str | None) -> None:
        media_type = (content_type or "").split(";")[0].strip().lower()
        self.kind = {"text/event-stream": "events", "application/x-ndjson": "lines",
                     "application/jsonl": "lines"}.get(
            media_type, "text" if media_type.startswith("text/") else "bytes")
        self._text = codecs.getincrementaldecoder("utf-8")("replace")
        self._buffer = ""

    def feed(self, data: bytes) -> list[Any]:
        """The items ``data`` completes (text: whatever decoded; lines and events: whole ones)."""
        if self.kind == "bytes":
            return [data] if data else []
        text = self._text.decode(data)
        if self.kind == "text":
            return [text] if text else []
        self._buffer += text
        return self._split(final=False)

    def end(self) -> list[Any]:
        """What is left when the answer ends (an unterminated last line or event)."""
        if self.kind == "bytes":
            return []
        tail = self._text.decode(b"", final=True)
        if self.kind == "text":
            return [tail] if tail else []
        self._buffer += tail
        return self._split(final=True)

    def _split(self, final: bool) -> list[Any]:
        separator = "\n\n" if self.kind == "events" else "\n"
        *complete, self._buffer = self._buffer.replace("\r\n", "\n").split(separator)
        if final and self._buffer.strip():
            complete.append(self._buffer)
            self._buffer = ""
        parse = _event_data if self.kind == "events" else _json_line
        return [item for item in map(parse, complete) if item is not _SKIP]


_SKIP = object()


def _json_line(line: str) -> Any:
    if not line.strip():
        return _SKIP
    try:
        return json.loads(line)
    except ValueError:
        raise RemoteError(f"the streamed answer holds a line that is not JSON: {line[:200]!r}",
                          status=502) from None


def _event_data(event: str) -> Any:
    data = [line[5:].removeprefix(" ") for line in event.split("\n") if line.startswith("data:")]
    return "\n".join(data) if data else _SKIP
