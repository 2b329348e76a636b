"""multipart/form-data bodies: parsing a received body into parts, and writing one.

The server has already read the whole body (within its size limit), so parsing works on bytes:
python-multipart's streaming parser finds the parts, and each part's data is a slice of memory,
never a temporary file.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from dosirak.exceptions import BadInput
from dosirak.io.base import field_error, parse_content_type

MAX_PARTS = 1000  # a form with more parts than this is an attack, not an inference request


@dataclass
class Part:
    """One part of a form: its field name, optional file name, media type and data."""

    name: str
    data: bytearray = field(default_factory=bytearray)
    filename: str | None = None
    content_type: str | None = None

    @property
    def media_type(self) -> str | None:
        return parse_content_type(self.content_type)[0]

    @property
    def params(self) -> dict[str, str]:
        return parse_content_type(self.content_type)[1]


class _Collector:
    """Callbacks for python-multipart's parser, building ``Part`` objects."""

    def __init__(self) -> None:
        self.parts: list[Part] = []
        self._headers: dict[bytes, bytes] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._data = bytearray()

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": lambda data, start, end: self._data.extend(data[start:end]),
        }

    def part_begin(self) -> None:
        if len(self.parts) >= MAX_PARTS:
            raise BadInput(f"the form has more than {MAX_PARTS} parts",
                           [field_error(["body"], "too many parts", "multipart_invalid")])
        self._headers = {}
        self._data = bytearray()

    def header_end(self) -> None:
        self._headers[bytes(self._field).lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition"))
        if disposition != b"form-data" or b"name" not in options:
            raise BadInput("every multipart part needs a 'Content-Disposition: form-data; "
                           "name=\"...\"' header",
                           [field_error(["body"], "part without a field name",
                                        "multipart_invalid")])
        filename = options.get(b"filename")
        content_type = self._headers.get(b"content-type")
        self.parts.append(Part(
            name=options[b"name"].decode("utf-8", "replace"),
            data=self._data,
            filename=None if filename is None else filename.decode("utf-8", "replace"),
            content_type=None if content_type is None else content_type.decode("latin-1"),
        ))


def parse_form(body: bytes | bytearray, params: dict[str, str]) -> list[Part]:
    """The parts of a multipart/form-data body whose Content-Type had ``params``."""
    boundary = params.get("boundary")
    if not boundary:
        raise BadInput("a multipart/form-data body needs a boundary parameter in its "
                       "Content-Type (HTTP clients add it when they build the form)",
                       [field_error(["body"], "no boundary", "multipart_invalid")])
    collector = _Collector()
    try:
        parser = MultipartParser(boundary.encode("latin-1"), collector.callbacks())  # type: ignore[arg-type]
        written = parser.write(body)  # type: ignore[arg-type]
        parser.finalize()
    except (MultipartParseError, ValueError, UnicodeEncodeError) as error:
        raise BadInput(f"malformed multipart/form-data body: {error}",
                       [field_error(["body"], str(error), "multipart_invalid")]) from None
    if written != len(body) or not _ended(body, boundary):
        raise BadInput("malformed multipart/form-data body: it ends before its closing boundary",
                       [field_error(["body"], "truncated form", "multipart_invalid")])
    return collector.parts


def _ended(body: bytes | bytearray, boundary: str) -> bool:
    # python-multipart accepts a body cut short silently; a complete one has its final marker.
    return body.rstrip(b"\r\n").endswith(b"--" + boundary.encode("latin-1") + b"--")


def write_form(parts: list[tuple[str, bytes, str, str | None]]) -> tuple[bytes, str]:
    """A multipart/form-data body of ``(name, data, content_type, filename)`` parts."""
    boundary = secrets.token_hex(16)
    chunks: list[bytes] = []
    for name, data, content_type, filename in parts:
        disposition = f'form-data; name="{_quote(name)}"'
        if filename is not None:
            disposition += f'; filename="{_quote(filename)}"'
        chunks.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                      f"Content-Type: {content_type}\r\n\r\n".encode())
        chunks.append(data)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "")
