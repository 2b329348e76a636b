"""JSON in and out of request bodies, with the errors clients need and the types models return.

Decoding never builds anything but plain JSON values. Encoding understands what prediction code
returns: numpy arrays and scalars, pandas objects, pydantic models, dataclasses, sets, bytes-free
containers. Output is strict JSON: NaN and infinities become ``null`` because browsers and most
JSON parsers reject the bare ``NaN`` token Python would write.
"""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any
from uuid import UUID

from dosirak.exceptions import BadInput

_decoder = json.JSONDecoder()


def _default(value: Any) -> Any:
    return _convert(value)


# The C encoder handles plain values itself and calls ``_default`` only for the rest.
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                            default=_default)


def loads(body: bytes | bytearray | memoryview | str) -> Any:
    """Parse a JSON body; malformed JSON is a ``BadInput`` naming the line and column."""
    try:
        text = body if isinstance(body, str) else bytes(body).decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadInput("malformed JSON: the body is not UTF-8 text", [
            {"loc": ["body"], "msg": f"byte {error.start} is not valid UTF-8",
             "type": "json_invalid"}]) from None
    try:
        return _decoder.decode(text)
    except json.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        raise BadInput(f"malformed JSON at {where}: {error.msg}",
                       [{"loc": ["body"], "msg": f"{error.msg} ({where})",
                         "type": "json_invalid"}]) from None
    except RecursionError:
        raise BadInput("malformed JSON: nested too deeply", [
            {"loc": ["body"], "msg": "nesting too deep", "type": "json_invalid"}]) from None


def dumps(value: Any) -> bytes:
    """Encode ``value`` as compact, strict JSON (UTF-8 bytes)."""
    try:
        return _encoder.encode(value).encode("utf-8")
    except (ValueError, TypeError):
        # Non-finite floats, or dict keys json refuses (numpy ints): redo it the slow way.
        return _encoder.encode(to_jsonable(value)).encode("utf-8")


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (dict, list, str, int, float, bool, None)."""
    return _finite(_plain(value))


def _plain(value: Any) -> Any:
    """Convert the containers and leaves json cannot encode; cheap for already-plain values."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return _plain(_convert(value))


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    converted = _convert(key) if not isinstance(key, (int, float, bool)) or key is None else key
    return converted if isinstance(converted, str) else json.dumps(converted)


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


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
