"""Text: a plain-text body in, a string out (prompts, documents, labels)."""

from __future__ import annotations

from typing import Any

from dosirak.exceptions import BadInput
from dosirak.io.base import InvalidOutput, IODescriptor, field_error

TEXT_MEDIA_TYPE = "text/plain"
_CONTENT_TYPE = "text/plain; charset=utf-8"


class Text(IODescriptor):
    """A ``str``: the request body decoded with its charset (UTF-8 unless it names another).

    The empty text is a value like any other, and a request without a body sends it: the
    OpenAPI request body is therefore not ``required``.
    """

    input_media_types = (TEXT_MEDIA_TYPE,)
    output_media_types = (TEXT_MEDIA_TYPE,)
    python_type = "str"

    @classmethod
    def from_sample(cls, sample: str) -> Text:
        """A Text descriptor whose docs show ``sample``."""
        descriptor = cls()
        descriptor.sample = str(sample)
        return descriptor

    def parse(self, body: bytes | bytearray, media_type: str, params: dict[str, str]) -> str:
        charset = params.get("charset", "utf-8")
        try:
            return body.decode(charset)
        except LookupError:
            raise BadInput(f"unknown charset {charset!r}; send UTF-8 text",
                           [field_error(["body"], f"unknown charset {charset!r}",
                                        "charset_invalid")]) from None
        except UnicodeDecodeError as error:
            raise BadInput(f"the body is not valid {charset} text (byte {error.start}); send "
                           "UTF-8, or name the charset in Content-Type",
                           [field_error(["body"], f"byte {error.start} is not valid {charset}",
                                        "charset_invalid")]) from None

    def from_json_value(self, value: Any) -> str:
        if not isinstance(value, str):
            raise BadInput("expected a string", [field_error([], "not a string", "type_error")])
        return value

    def render(self, value: Any, media_type: str) -> tuple[bytes, str]:
        if not isinstance(value, str):
            raise InvalidOutput(f"the API returned {type(value).__name__}; a Text output needs "
                                "a str")
        return value.encode("utf-8"), _CONTENT_TYPE

    def schema(self) -> dict[str, Any]:
        return {"type": "string"}

    def openapi_request_body(self) -> dict[str, Any]:
        return {"required": False, "content": self.openapi_content(self.input_media_types)}

    def openapi_content(self, media_types: tuple[str, ...]) -> dict[str, Any]:
        entry: dict[str, Any] = {"schema": {"type": "string"}}
        if self.sample is not None:
            entry["example"] = self.sample
        return {media_type: dict(entry) for media_type in media_types}

    def example(self) -> Any:
        return self.sample
