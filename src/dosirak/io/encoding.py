"""JSON in and out of request bodies, with the errors clients need and the types models return.

Decoding never builds anything but plain JSON values. Encoding understands what prediction code
returns: numpy arrays and scalars, pandas objects, pydantic models, dataclasses, sets, bytes-free
containers. Output is strict JSON: NaN and infinities become ``null`` because browsers and most
JSON parsers reject the bare ``NaN`` token Python's json module would write. orjson does the work:
it is several times faster than the json module both ways, which matters on every request.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any
from uuid import UUID

import orjson

from dosirak.exceptions import BadInput

# orjson writes numpy arrays itself (10x faster than tolist + json.dumps for a large float
# array), writes NaN and infinities as null, and calls ``_convert`` only for other types.
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def loads(body: bytes | bytearray | memoryview | str) -> Any:
    """Parse a JSON body; malformed JSON is a ``BadInput`` naming the line and column."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        raise BadInput(f"malformed JSON at {where}: {error.msg}",
                       [{"loc": ["body"], "msg": f"{error.msg} ({where})",
                         "type": "json_invalid"}]) from None


def dumps(value: Any) -> bytes:
    """Encode ``value`` as compact, strict JSON (UTF-8 bytes)."""
    return orjson.dumps(value, default=_convert, option=_OPTIONS)


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (dict, list, str, int, float, bool, None)."""
    return orjson.loads(dumps(value))


def _convert(value: Any) -> Any:
    module = type(value).__module__
    if module == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, np.generic):
            return value.item()
    if module.startswith("pandas"):
        if hasattr(value, "to_dict") and hasattr(value, "columns"):
            return value.to_dict(orient="records")
        if hasattr(value, "tolist"):
            return value.tolist()
        if hasattr(value, "isoformat"):
            return value.isoformat()
    if hasattr(value, "model_dump") and hasattr(type(value), "model_fields"):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (UUID, PurePath)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError("bytes cannot be written as JSON; return a str, or use the File or "
                        "Image descriptor for binary output")
    raise TypeError(f"a {type(value).__name__} cannot be written as JSON; return dicts, lists, "
                    "numbers, strings, numpy arrays, pandas objects or pydantic models")
