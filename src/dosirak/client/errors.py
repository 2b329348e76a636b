"""Error answers to typed exceptions, carrying the server's message, detail and status.

| status | exception |
|---|---|
| 400 | ``BadInput`` (``detail`` names each wrong field, column or axis) |
| 404 | ``NotFound`` |
| 413 | ``PayloadTooLarge`` |
| 415 | ``UnsupportedMediaType`` (``accepted`` lists what the API reads) |
| 429, 503 | ``ServiceOverloaded`` (``retry_after`` from the ``Retry-After`` header) |
| other 4xx, 5xx | ``RemoteError`` (``request_id`` names the server's log entry) |

Every exception has ``status`` (the answer's HTTP status), ``detail`` (a list, maybe empty) and
``request_id`` (None unless the server gave one).
"""

from __future__ import annotations

from typing import Any

import orjson

from dosirak.exceptions import (
    BadInput,
    DosirakError,
    NotFound,
    PayloadTooLarge,
    RemoteError,
    ServiceOverloaded,
    UnsupportedMediaType,
)

_TEXT_LIMIT = 300  # of a non-JSON error page (a proxy's HTML), kept in the message


def error_from_answer(status: int, body: bytes, headers: Any, where: str) -> DosirakError:
    """The exception for an error answer (``status`` >= 400) to the request ``where``."""
    payload = _payload(body)
    message = payload.get("error") if isinstance(payload.get("error"), str) else None
    if message is None:
        text = body.decode("utf-8", "replace").strip()[:_TEXT_LIMIT]
        message = f"{where} answered {status}" + (f": {text}" if text else "")
    detail = payload.get("detail") if isinstance(payload.get("detail"), list) else []
    request_id = payload.get("request_id") or headers.get("x-request-id")
    error: DosirakError
    if status == 400:
        error = BadInput(message, detail)
    elif status == 404:
        error = NotFound(message)
    elif status == 413:
        error = PayloadTooLarge(message)
    elif status == 415:
        error = UnsupportedMediaType(message)
        error.accepted = list(payload.get("accepted") or [])  # type: ignore[attr-defined]
    elif status in (429, 503):
        error = ServiceOverloaded(message, retry_after=_retry_after(headers))
    else:
        if request_id:
            message = f"{message} (request id {request_id})"
        return RemoteError(message, status=status, detail=detail, request_id=request_id)
    # The classes' own ``status`` is the one the server answers them with; the instance says
    # which status this answer had (429 and 503 are both ServiceOverloaded).
    error.status = status
    error.detail = detail  # type: ignore[attr-defined]
    error.request_id = request_id  # type: ignore[attr-defined]
    return error


def _payload(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _retry_after(headers: Any) -> float:
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except ValueError:  # an HTTP date: rare from services; wait the default second
        return 1.0
