"""Errors as HTTP answers: every failure maps to one status and a small JSON body.

- 400: malformed body, wrong shape or dtype, failed pydantic validation (``BadInput``);
  ``{"error": "...", "detail": [{"loc": [...], "msg": "...", "type": "..."}]}``
- 404: no such route; 405: wrong method (``Allow`` says which)
- 413: body over the size limit, checked while reading
- 415: a Content-Type the API does not read; ``accepted`` lists the ones it does
- 503: ``ServiceOverloaded``, shed before work started, or ``RunnerUnavailable``, a runner
  worker died under the call; ``Retry-After`` says when to retry
- 500: the API's code or model raised; ``{"error": "...", "request_id": "..."}``

Every body is JSON with an ``error`` message. A 500 never carries the exception's text or
traceback (they can hold data and paths); both go to the log under the request id, which the
body and the ``x-request-id`` header repeat.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from dosirak.exceptions import (
    BadInput,
    DosirakError,
    PayloadTooLarge,
    RunnerUnavailable,
    ServiceOverloaded,
    UnsupportedMediaType,
)
from dosirak.io.base import InvalidOutput
from dosirak.io.encoding import dumps
from dosirak.observability.request_id import request_id_from_headers

logger = logging.getLogger("dosirak.server")

JSON_HEADER = (b"content-type", b"application/json")
_STATUS_TEXT = {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                413: "Payload Too Large", 415: "Unsupported Media Type",
                500: "Internal Server Error", 503: "Service Unavailable"}
#: The JSON schemas of error bodies, for the OpenAPI document.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "string"}, "request_id": {"type": "string"},
                   "accepted": {"type": "array", "items": {"type": "string"}}},
}
VALIDATION_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string"},
        "detail": {"type": "array", "items": {
            "type": "object", "required": ["loc", "msg"],
            "properties": {"loc": {"type": "array",
                                   "items": {"oneOf": [{"type": "string"},
                                                       {"type": "integer"}]}},
                           "msg": {"type": "string"}, "type": {"type": "string"}}}},
    },
}


def request_id_of(headers: list[tuple[bytes, bytes]] | None) -> str:
    """The request's id: its ``x-request-id`` when sane, else a new one.

    The one rule lives in :mod:`dosirak.observability.request_id`. Behind the server's traffic
    layer the header is always there (the client's sane id, or the one the layer generated and
    put into the request's headers), so a 500 body quotes the id of the response header and the
    access log line.
    """
    return request_id_from_headers(headers or [])


def error_response(error: BaseException, *, route: str,
                   headers: list[tuple[bytes, bytes]] | None = None,
                   shape: Callable[[int, dict[str, Any]], dict[str, Any]] | None = None,
                   ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The status, JSON body and extra headers that answer ``error``.

    ``shape(status, body)`` may reshape the body (an API's output descriptor does, through
    ``IODescriptor.error_body``); the status and headers stay as they are.
    """
    status, body, extra = _error_parts(error, route=route, headers=headers)
    return status, dumps(shape(status, body) if shape is not None else body), extra


def _error_parts(error: BaseException, *, route: str,
                 headers: list[tuple[bytes, bytes]] | None,
                 ) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
    extra: list[tuple[bytes, bytes]] = []
    if isinstance(error, BadInput):
        return 400, {"error": str(error), "detail": error.detail}, extra
    if isinstance(error, UnsupportedMediaType):
        accepted = list(getattr(error, "accepted", []))
        return 415, {"error": str(error), "accepted": accepted}, extra
    if isinstance(error, PayloadTooLarge):
        # The rest of the body is not read: the connection cannot be reused.
        return 413, {"error": str(error)}, [(b"connection", b"close")]
    if isinstance(error, (ServiceOverloaded, RunnerUnavailable)):
        seconds = max(1, math.ceil(error.retry_after))
        extra.append((b"retry-after", str(seconds).encode()))
        return 503, {"error": str(error)}, extra
    if isinstance(error, DosirakError) and 400 <= error.status < 500:
        return error.status, {"error": str(error)}, extra
    request_id = request_id_of(headers)
    extra.append((b"x-request-id", request_id.encode()))
    logger.error("request %s to %s failed", request_id, route, exc_info=error)
    if isinstance(error, InvalidOutput):
        message = f"the API's return value does not fit its output: {error}"
    else:
        message = "the API raised an exception; the server log has the details under this " \
                  "request id"
    return 500, {"error": message, "request_id": request_id}, extra


def status_body(status: int, message: str | None = None) -> bytes:
    """A JSON error body for a plain status (404, 405 ...)."""
    return dumps({"error": message or _STATUS_TEXT.get(status, "error")})
