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
#: The class of each status the server answers with one (the server's own mapping, reversed);
#: any other status is a ``RemoteError``.
CLASS_OF_STATUS: dict[int, type[DosirakError]] = {
    400: BadInput, 404: NotFound, 413: PayloadTooLarge, 415: UnsupportedMediaType,
    429: ServiceOverloaded, 503: ServiceOverloaded,
}


def error_from_answer(status: int, body: bytes, headers: Any, where: str) -> DosirakError:
    """The exception for an error answer (``status`` >= 400) to the request ``where``."""
    payload = _payload(body)
    message = payload.get("error") if isinstance(payload.get("error"), str) else None
    if message is None:
        text = body.decode("utf-8", "replace").strip()[:_TEXT_LIMIT]
        message = f"{where} answered {status}" + (f": {text}" if text else "")
    detail: list[dict[str, Any]] = payload["detail"] if isinstance(payload.get("detail"), list) \
        else []
    request_id = payload.get("request_id") or headers.get("x-request-id")
    error_class = CLASS_OF_STATUS.get(status, RemoteError)
    if error_class is RemoteError and request_id:
        message = f"{message} (request id {request_id})"
    return error_class.from_answer(message, status=status, body=payload, headers=headers,
                                   detail=detail, request_id=request_id)


def _payload(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return payload if isinstance(payload, dict) else {}
