"""File: an uploaded file (raw body or a multipart upload) in, bytes or a file out.

    >>> @svc.api(input=File(), output=File(mime_type="application/pdf"))
    ... def convert(upload: UploadedFile) -> bytes: ...

The API function receives an ``UploadedFile`` (a ``BytesIO`` that knows its file name and media
type), or with ``kind="path"`` a ``pathlib.Path`` to a temporary copy that is deleted after the
call.
"""

from __future__ import annotations

import base64
import binascii
import io
import mimetypes
import os
import tempfile
from pathlib import Path, PurePath
from typing import Any

from dosirak.exceptions import BadInput
from dosirak.io.base import BINARY_SCHEMA, InvalidOutput, IODescriptor, check_option, field_error
from dosirak.io.form import parse_form

OCTET_STREAM = "application/octet-stream"
FORM_MEDIA_TYPE = "multipart/form-data"
_KINDS = ("binaryio", "path")


class UploadedFile(io.BytesIO):
    """The bytes of an uploaded file, readable like a file, with its name and media type."""

    def __init__(self, data: bytes | bytearray, filename: str | None = None,
                 content_type: str | None = None) -> None:
        super().__init__(data)
        self.filename = filename
        self.content_type = content_type

    @property
    def name(self) -> str | None:
        return self.filename


class File(IODescriptor):
    """Any file: ``kind`` is ``"binaryio"`` (an ``UploadedFile``) or ``"path"`` (a temp file)."""

    input_media_types = ("*/*",)
    python_type = "dosirak.io.UploadedFile"

    def __init__(self, kind: str = "binaryio", mime_type: str | None = None) -> None:
        check_option(kind in _KINDS, f"File: kind must be one of {_KINDS}, got {kind!r}")
        self.kind = kind
        self.mime_type = mime_type
        self.output_media_types = (mime_type or OCTET_STREAM,)
        self.needs_cleanup = kind == "path"
        if kind == "path":
            self.python_type = "pathlib.Path"

    @classmethod
    def from_sample(cls, sample: Any, kind: str = "binaryio") -> File:
        """A File descriptor whose output type is guessed from a sample path's suffix."""
        mime_type = None
        if isinstance(sample, (str, PurePath)):
            mime_type = mimetypes.guess_type(str(sample))[0]
        return cls(kind=kind, mime_type=mime_type)

    # ----- reading ------------------------------------------------------------------------

    def parse(self, body: bytes | bytearray, media_type: str, params: dict[str, str]) -> Any:
        if media_type == FORM_MEDIA_TYPE:
            part = single_upload(parse_form(body, params), "file")
            return self._value(part.data, part.filename, part.content_type)
        return self._value(body, None, media_type)

    def from_json_value(self, value: Any) -> Any:
        return self._value(decode_base64(value), None, None)

    def _value(self, data: bytes | bytearray, filename: str | None,
               content_type: str | None) -> Any:
        if self.kind == "binaryio":
            return UploadedFile(data, filename, content_type)
        suffix = PurePath(filename).suffix if filename else ""
        descriptor, name = tempfile.mkstemp(prefix="dosirak-upload-", suffix=suffix[:16])
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
        return Path(name)

    def cleanup(self, value: Any) -> None:
        if self.kind == "path" and isinstance(value, Path):
            value.unlink(missing_ok=True)

    # ----- writing ------------------------------------------------------------------------

    def render(self, value: Any, media_type: str) -> tuple[bytes, str]:
        content_type = self.mime_type
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
        elif isinstance(value, PurePath):
            data = Path(value).read_bytes()
            content_type = content_type or mimetypes.guess_type(value.name)[0]
        elif hasattr(value, "read"):
            data = value.read()
            if isinstance(data, str):
                data = data.encode("utf-8")
            content_type = content_type or getattr(value, "content_type", None)
        else:
            raise InvalidOutput(f"the API returned {type(value).__name__}; a File output needs "
                                "bytes, a file object or a pathlib.Path")
        return data, content_type or OCTET_STREAM

    # ----- describing ---------------------------------------------------------------------

    def schema(self) -> dict[str, Any]:
        return dict(BINARY_SCHEMA)

    def openapi_request_body(self) -> dict[str, Any]:
        return {"required": True, "content": {
            OCTET_STREAM: {"schema": dict(BINARY_SCHEMA)},
            FORM_MEDIA_TYPE: {"schema": upload_form_schema("file")},
        }}

    def to_spec(self) -> dict[str, Any]:
        return {"type": "File", "kind": self.kind, "mime_type": self.mime_type}


def upload_form_schema(field: str) -> dict[str, Any]:
    """The schema of a form with one file field."""
    return {"type": "object", "properties": {field: dict(BINARY_SCHEMA)}, "required": [field]}


def single_upload(parts: list[Any], kind: str) -> Any:
    """The one file of a form that uploads one file (the part with a file name, else the one)."""
    files = [part for part in parts if part.filename is not None] or parts
    if len(files) != 1:
        raise BadInput(f"expected a form with exactly one {kind}, got {len(files)} parts",
                       [field_error(["body"], f"{len(files)} parts, expected 1",
                                    "multipart_invalid")])
    return files[0]


def decode_base64(value: Any) -> bytes:
    """Bytes from a base64 string, or from ``{"b64": "..."}`` as TensorFlow Serving sends."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        value = value["b64"]
    if not isinstance(value, str):
        raise BadInput('expected base64 text, or an object {"b64": "<base64>"}',
                       [field_error([], "not base64 text", "type_error")])
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadInput(f"invalid base64: {error}",
                       [field_error([], f"invalid base64: {error}", "base64_invalid")]) from None
