"""The seed's answer envelope, as an output descriptor that wraps another one.

    >>> Envelope(NumpyNdarray())          # 200: {"success": true, "message": "Success",
    ...                                   #       "result": [2, 0]}
    ...                                   # 400: {"success": false, "message": "Fail: ...",
    ...                                   #       "detail": [...]}

Success and failure answers both are JSON objects; failures keep the server's status (400 bad
input, 413, 415, 500 model error, 503 overloaded) and the server's extra keys (``detail``,
``request_id``, ``accepted``), so a client can branch on either the status or ``success``.
"""

from __future__ import annotations

import base64
from typing import Any

from dosirak.io.base import JSON_MEDIA_TYPE, IODescriptor
from dosirak.io.encoding import dumps

SUCCESS_PREFIX = b'{"success":true,"message":"Success","result":'
FAILURE_PREFIX = "Fail: "


class Envelope(IODescriptor):
    """``{"success": true, "message": "Success", "result": <inner's JSON>}`` and its failure twin.

    The result is the inner descriptor's JSON form: an array's nested lists, a DataFrame in its
    ``orient``; text becomes a JSON string, binary output (images) a base64 string.
    """

    output_media_types = (JSON_MEDIA_TYPE,)

    def __init__(self, inner: IODescriptor) -> None:
        self.inner = inner
        self._json = JSON_MEDIA_TYPE in inner.output_media_types
        self.python_type = inner.python_type

    def render(self, value: Any, media_type: str) -> tuple[bytes, str]:
        # The inner body is spliced in, not parsed and re-encoded: one encoding per answer.
        return b"".join((SUCCESS_PREFIX, self.result_json(value), b"}")), JSON_MEDIA_TYPE

    def result_json(self, value: Any) -> bytes:
        """The JSON bytes of ``result`` for ``value``."""
        if self._json:
            return self.inner.render(value, JSON_MEDIA_TYPE)[0]
        data, content_type = self.inner.render(value, self.inner.output_media_types[0])
        if content_type.startswith("text/"):
            return dumps(data.decode("utf-8"))
        return dumps(base64.b64encode(data).decode("ascii"))

    def error_body(self, status: int, body: dict[str, Any]) -> dict[str, Any]:
        rest = {key: value for key, value in body.items() if key != "error"}
        return {"success": False, "message": f"{FAILURE_PREFIX}{body.get('error', '')}", **rest}

    def error_schema(self) -> dict[str, Any]:
        return {"type": "object", "required": ["success", "message"],
                "properties": {"success": {"type": "boolean", "enum": [False]},
                               "message": {"type": "string"},
                               "request_id": {"type": "string"},
                               "accepted": {"type": "array", "items": {"type": "string"}},
                               "detail": {"type": "array", "items": {"type": "object"}}}}

    def schema(self) -> dict[str, Any]:
        if self._json:
            result = self.inner.schema()
        elif self.inner.output_media_types[0].startswith("text/"):
            result = {"type": "string"}
        else:
            result = {"type": "string", "format": "byte"}
        return {"type": "object", "required": ["success", "message", "result"],
                "properties": {"success": {"type": "boolean"},
                               "message": {"type": "string"}, "result": result}}

    def components(self) -> dict[str, dict[str, Any]]:
        return self.inner.components()

    def example(self) -> Any:
        inner = self.inner.example() if self._json else None
        if inner is None:
            return None
        return {"success": True, "message": "Success", "result": inner}

    def to_spec(self) -> dict[str, Any]:
        return {"type": "Envelope", "result": self.inner.to_spec()}
