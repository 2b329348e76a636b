"""The access log: one line per request on the ``dosirak.access`` logger.

    >>> access_log = AccessLog()
    >>> access_log.record("3f9c0a1b2d4e-1", "POST", "/classify", 200, 0.412, 52, 8)

gives, through the handler that :func:`~dosirak.observability.log_setup.configure_logging`
installs, ``... request_id=3f9c0a1b2d4e-1 method=POST path=/classify status=200 latency_ms=0.412
request_bytes=52 response_bytes=8`` or the same fields as one JSON object.

Nothing is formatted unless the logger is enabled for INFO, and then only by the handler: the
request path pays for one level check and one small object.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

ACCESS_LOGGER = "dosirak.access"
# Longer paths are cut in the log (the request itself is not affected).
MAX_LOGGED_PATH = 512


class AccessLine:
    """One request's fields; ``str()`` is the text form, ``fields()`` feeds the JSON form."""

    __slots__ = ("latency_ms", "method", "path", "request_id", "request_size", "response_size",
                 "status", "trace_id")

    def __init__(self, request_id: str, method: str, path: str, status: int, latency_ms: float,
                 request_size: int | None, response_size: int | None,
                 trace_id: str | None = None) -> None:
        self.request_id = request_id
        self.method = method
        self.path = path
        self.status = status
        self.latency_ms = latency_ms
        self.request_size = request_size
        self.response_size = response_size
        self.trace_id = trace_id  # with tracing on: the request's trace id ("-": not sampled)

    def fields(self) -> dict[str, Any]:
        """The line as a dict (what the JSON form holds)."""
        fields = {"request_id": self.request_id, "method": self.method,
                  "path": _cut(self.path), "status": self.status,
                  "latency_ms": round(self.latency_ms, 3), "request_bytes": self.request_size,
                  "response_bytes": self.response_size}
        if self.trace_id is not None:
            fields["trace_id"] = self.trace_id
        return fields

    def __str__(self) -> str:
        text = (f"request_id={safe_text(self.request_id)} method={safe_text(self.method)} "
                f"path={safe_text(_cut(self.path))} status={self.status} "
                f"latency_ms={self.latency_ms:.3f} request_bytes={_size(self.request_size)} "
                f"response_bytes={_size(self.response_size)}")
        return text if self.trace_id is None else f"{text} trace_id={self.trace_id}"


class AccessLog:
    """Writes :class:`AccessLine` records to the ``dosirak.access`` logger (or ``logger``)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(ACCESS_LOGGER)

    @property
    def enabled(self) -> bool:
        """Whether a line would be written (the server may skip measuring sizes when not)."""
        return self.logger.isEnabledFor(logging.INFO)

    def record(self, request_id: str, method: str, path: str, status: int, latency_ms: float,
               request_size: int | None = None, response_size: int | None = None,
               trace_id: str | None = None) -> None:
        """Log one request; sizes are body bytes (``None`` when unknown); ``trace_id``: the
        request's trace, with tracing on."""
        # isEnabledFor is a cached dict lookup: a disabled log costs almost nothing.
        logger = self.logger
        if logger.isEnabledFor(logging.INFO):
            handlers = logger.handlers
            if len(handlers) == 1 and not logger.filters and not handlers[0].filters:
                later = getattr(handlers[0], "access_later", None)
                if later is not None:  # serve's batched stream: formatted when written
                    later((time.time(), request_id, method, path, status, latency_ms,
                           request_size, response_size, trace_id))
                    return
            # handle(makeRecord()) rather than info(): the caller's frame would always be this
            # line, and looking it up costs more than the rest of the record.
            logger.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 0,
                                            AccessLine(request_id, method, path, status,
                                                       latency_ms, request_size, response_size,
                                                       trace_id),
                                            None, None))


def safe_text(text: str) -> str:
    """``text`` as one logfmt value: as is when plain, else quoted with escapes.

    Paths and headers come from clients: a newline or a quote in them must not forge a log line.
    """
    if text and text.isprintable() and " " not in text and '"' not in text and "=" not in text:
        return text
    return json.dumps(text)


def _cut(path: str) -> str:
    return path if len(path) <= MAX_LOGGED_PATH else path[:MAX_LOGGED_PATH] + "..."


def _size(size: int | None) -> str:
    return "-" if size is None else str(size)
