"""The 1.2 wire format of a one-parameter API: a JSON object keyed by the parameter's name.

BentoML 1.2 clients call ``classify(input_series=x)`` and send ``{"input_series": x}``; a call
without the argument sends ``{}`` so that the parameter's default applies. dosirak's own bodies
are the bare value (``[[5.9, 3.0, 5.1, 1.8]]``). ``keyed_parser`` gives an API whose input was
derived from one named parameter a parse that reads both:

- a JSON object whose keys are exactly ``{name}`` is the keyed form: its value is the input;
- ``{}`` is the keyed form without the argument: the parameter's default (when it has one);
- any other body is the bare value, parsed by the descriptor as before.

Where a bare value could itself be such an object (a dict, a DataFrame in ``columns`` layout
with one column of that name), the keyed reading wins, as it would in BentoML 1.2; a pydantic
model with a field of that name is the exception, as there the bare reading is the natural one.
Bodies that do not start with ``{`` are parsed as before, at no extra cost beyond one match.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from dosirak.io.base import JSON_MEDIA_TYPE, IODescriptor
from dosirak.io.encoding import loads

#: The default of a parameter that has none.
NO_DEFAULT: Any = object()
_OBJECT = re.compile(rb"\s*\{")

Parse = Callable[[bytes | bytearray, str, dict[str, str]], Any]


def reads_json_values(descriptor: IODescriptor) -> bool:
    """Whether the descriptor can take a value inside a JSON document (``from_json_value``)."""
    return type(descriptor).from_json_value is not IODescriptor.from_json_value


def keyed_parser(descriptor: IODescriptor, name: str, default: Any = NO_DEFAULT
                 ) -> Parse | None:
    """A parse reading ``{name: value}`` as well as the bare value; None when the descriptor
    cannot take a value from JSON, or when a keyed object would be a natural bare value (see
    the module doc). A descriptor that reads no JSON body itself (``Text``: ``prompt: str``)
    gets JSON bodies this way too: the keyed object, or a bare JSON value."""
    if not reads_json_values(descriptor):
        return None
    model = getattr(descriptor, "pydantic_model", None)
    if name in (getattr(model, "model_fields", None) or {}):
        return None
    parse = descriptor.parse
    from_json_value = descriptor.from_json_value
    has_default = default is not NO_DEFAULT
    own_json = JSON_MEDIA_TYPE in descriptor.input_media_types

    def keyed_parse(body: bytes | bytearray, media_type: str, params: dict[str, str]) -> Any:
        if media_type != JSON_MEDIA_TYPE or (own_json and not _OBJECT.match(body)):
            return parse(body, media_type, params)
        value = loads(body)
        if isinstance(value, dict):
            if len(value) == 1 and name in value:
                return from_json_value(value[name])
            if not value and has_default:
                return default
        return from_json_value(value)

    return keyed_parse


def media_types_for(descriptor: IODescriptor, keyed: bool) -> Callable[[str | None], str | None]:
    """The endpoint's ``media_type_for``: the descriptor's, plus JSON for a keyed API whose
    descriptor reads no JSON body itself."""
    resolve = descriptor.media_type_for
    if not keyed or JSON_MEDIA_TYPE in descriptor.input_media_types:
        return resolve

    def with_json(media_type: str | None) -> str | None:
        return JSON_MEDIA_TYPE if media_type == JSON_MEDIA_TYPE else resolve(media_type)

    return with_json
