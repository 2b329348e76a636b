"""Errors as HTTP answers: every failure maps to one status and a small JSON body.

- 400: malformed body, wrong shape or dtype, failed pydantic validation (``BadInput``);
  ``{"error": "...", "detail": [{"loc": [...], "msg": "...", "type": "..."}]}``
- 404: no such route; 405: wrong method (``Allow`` says which)
- 413: body over the size limit, checked while reading
- 415: a Content-Type the API does not read; ``accepted`` lists the ones it does
- 503: ``ServiceOverloaded``, shed before work started, or ``RunnerUnavailable``, a runner
  worker died under the call; ``Retry-After`` says when to retry
- 500: the API's code or model raised; ``{"error": "...", "request_id": "..."}``; or the
  service's code misused dosirak (``ServiceCodeError``, the message says how)

Every ``DosirakError`` carries its own answer (``status``, ``headers``, ``body()``,
``client_message()``, see ``dosirak.exceptions``): this module adds nothing per class. Every
body is JSON with an ``error`` message. A failure (500) carries the exception's text only when
its class says the text names code, not data; text and traceback go to the log under the
request id, which the body and the ``x-request-id`` header repeat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from dosirak.exceptions import DosirakError
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


# What a failure's answer says when its message must stay in the log.
_FAILED = "the API raised an exception; the server log has the details under this request id"
# Stands for any exception that is not a DosirakError (status 500, nothing to show).
_UNEXPECTED = DosirakError()


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
    # Anything but a DosirakError is the API's own code or its model raising: a failure.
    known = error if isinstance(error, DosirakError) else _UNEXPECTED
    extra = [(name.encode("latin-1"), value.encode("latin-1"))
             for name, value in known.headers.items()]
    if not known.failure:
        return known.status, {"error": known.client_message(), **known.body()}, extra
    request_id = request_id_of(headers)
    extra.append((b"x-request-id", request_id.encode()))
    logger.error("request %s to %s failed", request_id, route, exc_info=error)
    message = known.client_message() or _FAILED
    return 500, {"error": message, **known.body(), "request_id": request_id}, extra


def status_body(status: int, message: str | None = None) -> bytes:
    """A JSON error body for a plain status (404, 405 ...)."""
    return dumps({"error": message or _STATUS_TEXT.get(status, "error")})
