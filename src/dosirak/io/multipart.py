"""Multipart: several named inputs in one request, each read by its own descriptor.

    >>> @svc.api(input=Multipart(arr=NumpyNdarray(), meta=JSON(pydantic_model=Meta)),
    ...          output=NumpyNdarray())
    ... def predict(arr: np.ndarray, meta: Meta) -> np.ndarray: ...

The API function receives one keyword argument per field. A request sends either a
multipart/form-data body (one part per field; files, images and arrays as their own media types)
or, when every field can be written in JSON, one JSON object ``{"arr": [[1, 2]], "meta": {...}}``.
Errors name the field they come from (``loc: ["meta", "field1"]``).
"""

from __future__ import annotations

from typing import Any

from dosirak.exceptions import BadInput
from dosirak.io.base import (
    BINARY_SCHEMA,
    JSON_MEDIA_TYPE,
    InvalidOutput,
    IODescriptor,
    check_option,
    field_error,
    prefix_errors,
)
from dosirak.io.encoding import loads
from dosirak.io.form import parse_form, write_form
from dosirak.io.limits import InputLimits

FORM_MEDIA_TYPE = "multipart/form-data"
_BINARY_FIELDS = ("Image", "File")


class Multipart(IODescriptor):
    """Named fields, each an IO descriptor: ``Multipart(image=Image(), meta=JSON())``."""

    input_media_types = (FORM_MEDIA_TYPE, JSON_MEDIA_TYPE)
    output_media_types = (FORM_MEDIA_TYPE,)
    python_type = "keyword arguments"

    def __init__(self, **fields: IODescriptor) -> None:
        check_option(bool(fields), "Multipart needs at least one field: Multipart(name=...)")
        for name, descriptor in fields.items():
            check_option(isinstance(descriptor, IODescriptor) and
                         not isinstance(descriptor, Multipart),
                         f"Multipart field {name!r} must be an IO descriptor such as "
                         f"NumpyNdarray() (not nested Multipart), got {descriptor!r}")
        self.fields = dict(fields)
        self.optional: frozenset[str] = frozenset()
        self.needs_cleanup = any(d.needs_cleanup for d in fields.values())
        # The form costs what its costliest part costs to parse.
        self.parse_on_loop_below = min(d.parse_on_loop_below for d in fields.values())

    def apply_limits(self, limits: InputLimits) -> None:
        for descriptor in self.fields.values():
            descriptor.apply_limits(limits)

    def with_optional(self, names: set[str] | frozenset[str]) -> Multipart:
        """Let the fields ``names`` be left out of a request (the function has defaults)."""
        unknown = set(names) - set(self.fields)
        check_option(not unknown, f"Multipart has no fields {sorted(unknown)}")
        self.optional = frozenset(names)
        return self

    # ----- reading ------------------------------------------------------------------------

    def parse(self, body: bytes | bytearray, media_type: str, params: dict[str, str]) -> Any:
        if media_type == JSON_MEDIA_TYPE:
            return self.from_json_value(loads(body))
        values: dict[str, Any] = {}
        try:
            for part in parse_form(body, params):
                descriptor = self._field(part.name)
                if part.name in values:
                    raise BadInput(f"field {part.name!r} is sent twice",
                                   [field_error([part.name], "duplicate field")])
                field_type = descriptor.media_type_for(part.media_type)
                if field_type is None:
                    raise BadInput(f"field {part.name!r} cannot be {part.media_type}; send one "
                                   f"of {list(descriptor.input_media_types)}",
                                   [field_error([part.name], f"unsupported type "
                                                f"{part.media_type}", "media_type_invalid")])
                try:
                    values[part.name] = descriptor.parse(part.data, field_type, part.params)
                except BadInput as error:
                    raise prefix_errors(error, part.name) from None
            self._check_missing(values)
        except BaseException:
            self.cleanup(values)
            raise
        return values

    def from_json_value(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise BadInput(f"expected a JSON object with the fields {list(self.fields)}",
                           [field_error(["body"], "expected a JSON object", "type_error")])
        values: dict[str, Any] = {}
        try:
            for name, item in value.items():
                descriptor = self._field(name)
                try:
                    values[name] = descriptor.from_json_value(item)
                except BadInput as error:
                    raise prefix_errors(error, name) from None
            self._check_missing(values)
        except BaseException:
            self.cleanup(values)
            raise
        return values

    def _field(self, name: str) -> IODescriptor:
        descriptor = self.fields.get(name)
        if descriptor is None:
            raise BadInput(f"unknown field {name!r}; this API reads {list(self.fields)}",
                           [field_error([name], "unknown field", "extra_forbidden")])
        return descriptor

    def _check_missing(self, values: dict[str, Any]) -> None:
        missing = [name for name in self.fields if name not in values and
                   name not in self.optional]
        if missing:
            raise BadInput(f"missing field(s) {missing}",
                           [field_error([name], "field required", "missing")
                            for name in missing])

    def cleanup(self, value: Any) -> None:
        if not self.needs_cleanup or not isinstance(value, dict):
            return
        for name, item in value.items():
            descriptor = self.fields.get(name)
            if descriptor is not None:
                descriptor.cleanup(item)

    # ----- writing ------------------------------------------------------------------------

    def render(self, value: Any, media_type: str) -> tuple[bytes, str]:
        if isinstance(value, (tuple, list)) and len(value) == len(self.fields):
            value = dict(zip(self.fields, value, strict=True))
        if not isinstance(value, dict) or set(value) != set(self.fields):
            raise InvalidOutput(f"a Multipart output needs a dict with the keys "
                                f"{list(self.fields)}, got {type(value).__name__}")
        parts = []
        for name, descriptor in self.fields.items():
            data, content_type = descriptor.render(value[name],
                                                   descriptor.output_media_types[0])
            filename = name if type(descriptor).__name__ in _BINARY_FIELDS else None
            parts.append((name, data, content_type, filename))
        return write_form(parts)

    # ----- describing ---------------------------------------------------------------------

    def schema(self) -> dict[str, Any]:
        return self._object_schema(json_body=True)

    def _object_schema(self, json_body: bool) -> dict[str, Any]:
        properties = {}
        for name, descriptor in self.fields.items():
            binary = type(descriptor).__name__ in _BINARY_FIELDS
            if binary and json_body:
                properties[name] = {"type": "string", "format": "byte",
                                    "description": "base64 of the file"}
            elif binary:
                properties[name] = dict(BINARY_SCHEMA)
            else:
                properties[name] = descriptor.schema()
        required = [name for name in self.fields if name not in self.optional]
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        schema["additionalProperties"] = False  # unknown fields are refused, as parts or keys
        return schema

    def components(self) -> dict[str, dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        for descriptor in self.fields.values():
            merged.update(descriptor.components())
        return merged

    def openapi_content(self, media_types: tuple[str, ...]) -> dict[str, Any]:
        encoding = {}
        for name, descriptor in self.fields.items():
            default = descriptor.input_media_types[0]
            if default != JSON_MEDIA_TYPE or type(descriptor).__name__ in _BINARY_FIELDS:
                encoding[name] = {"contentType": default.replace("*/*",
                                                                 "application/octet-stream")}
            else:
                encoding[name] = {"contentType": JSON_MEDIA_TYPE}
        content: dict[str, Any] = {}
        for media_type in media_types:
            if media_type == FORM_MEDIA_TYPE:
                content[media_type] = {"schema": self._object_schema(json_body=False),
                                       "encoding": encoding}
            else:
                entry: dict[str, Any] = {"schema": self._object_schema(json_body=True)}
                example = self.example()
                if example is not None:
                    entry["example"] = example
                content[media_type] = entry
        return content

    def example(self) -> Any:
        examples = {name: d.example() for name, d in self.fields.items()}
        if any(value is None for value in examples.values()):
            return None
        return examples

    def to_spec(self) -> dict[str, Any]:
        return {"type": "Multipart",
                "fields": {name: d.to_spec() for name, d in self.fields.items()},
                "optional": sorted(self.optional)}
