"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS): valid bodies for binary media types.

A JSON schema can say "a string of bytes" but not "a PNG", "a Parquet file" or "a .npy array of
int64 with rows of 3": left alone, schemathesis sends random bytes as schema-valid bodies and
the services rightly refuse them. So every binary media type the example services read gets a
generator of real files here, and JSON bodies are left to the schema alone, except base64
images (``format: byte`` holds any bytes, an image descriptor needs an image).

- ``image/*``: small PNG, JPEG, GIF and BMP files of random pixels (random size and mode),
  registered as media types.
- ``application/x-npy``, ``text/csv``, ``application/vnd.apache.parquet`` and
  ``application/octet-stream`` depend on the operation (a dtype and a shape, a table's columns,
  Parquet or an image). Their registered strategies draw a seed; ``map_case`` then writes the
  body for the operation from its own ``application/json`` schema, which the same descriptor
  enforces: a .npy of the leaves' dtype and the arrays' sizes, a CSV or Parquet table with the
  schema's columns and types, and for octet-stream whichever of Parquet or an image the
  operation's other media types name.
- Positive cases of image operations get a real image's base64 wherever the JSON body holds
  ``b64``; negative cases keep what schemathesis drew, so their violation stays.
- A multipart part declared ``application/json`` whose value is a list is sent as its JSON
  text: schemathesis sends an empty list as no part at all (a "schema-valid" body missing a
  required part).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from typing import Any

import numpy as np
import pandas as pd
import schemathesis
from hypothesis import strategies as st
from PIL import Image as PILImage
from schemathesis.core.parameters import ParameterLocation

SEED = b"dosirak-seed:"
JSON_TYPE = "application/json"
NPY = "application/x-npy"
CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"
OCTET_STREAM = "application/octet-stream"
_IMAGE_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF",
                  "image/bmp": "BMP"}


def image_bytes(random: np.random.Generator, image_format: str) -> bytes:
    """A small image of random pixels in ``image_format``, in a mode that format writes."""
    modes = {"JPEG": ("RGB", "L"), "GIF": ("P", "L"), "BMP": ("RGB", "L")}
    mode = str(random.choice(modes.get(image_format, ("RGB", "RGBA", "L", "LA"))))
    width, height = (int(size) for size in random.integers(1, 24, size=2))
    channels = len(PILImage.new(mode, (1, 1)).getbands())
    pixels = random.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    image = PILImage.fromarray(pixels.squeeze(axis=2) if channels == 1 else pixels,
                               mode="L" if mode == "P" else mode)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def _generator(seed: bytes) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(seed[-8:], "little"))


for _media_type, _format in _IMAGE_FORMATS.items():
    schemathesis.openapi.media_type(_media_type, st.binary(min_size=8, max_size=8).map(
        lambda seed, image_format=_format: image_bytes(_generator(seed), image_format)))

MEDIA_TYPES = (*_IMAGE_FORMATS, NPY, CSV, PARQUET, OCTET_STREAM)
for _media_type in (NPY, CSV, PARQUET, OCTET_STREAM):
    schemathesis.openapi.media_type(
        _media_type, st.binary(min_size=8, max_size=8).map(lambda seed: SEED + seed))


# ----- bodies written from the operation's JSON schema -----------------------------------------

def _json_schema(operation: Any) -> dict[str, Any]:
    body = operation.get_body_for_media_type(JSON_TYPE)
    assert body is not None, f"{operation.label} has no JSON schema to write a binary body from"
    return body.resolved_schema


def _leaf_dtype(schema: dict[str, Any]) -> np.dtype:
    kind, form = schema.get("type"), schema.get("format")
    if kind == "integer":
        return np.dtype(form if form in ("int8", "int16", "int32", "int64", "uint8", "uint16",
                                         "uint32", "uint64") else "int64")
    if kind == "boolean":
        return np.dtype(bool)
    return np.dtype("float32" if form == "float" else "float64")


def _values(random: np.random.Generator, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    if dtype.kind == "b":
        return random.integers(0, 2, size=shape).astype(bool)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return random.integers(max(info.min, -1000), min(info.max, 1000), size=shape,
                               endpoint=True).astype(dtype)
    return (random.standard_normal(size=shape) * 10).astype(dtype)


def npy_body(random: np.random.Generator, schema: dict[str, Any]) -> bytes:
    """A .npy array the schema's nested arrays describe: their sizes and the leaves' dtype."""
    shape: list[int] = []
    while True:
        if "anyOf" in schema:  # a flat list or one value: the list
            schema = schema["anyOf"][0]
        if schema.get("type") != "array":
            break
        fixed = schema.get("minItems") if schema.get("minItems") == schema.get("maxItems") \
            else None
        shape.append(int(fixed) if fixed is not None else int(random.integers(0, 5)))
        schema = schema.get("items") or {}
    buffer = io.BytesIO()
    np.save(buffer, _values(random, _leaf_dtype(schema), tuple(shape)), allow_pickle=False)
    return buffer.getvalue()


def table(random: np.random.Generator, schema: dict[str, Any]) -> pd.DataFrame:
    """A DataFrame with the columns and types of a ``records`` schema's rows."""
    row = schema["items"]
    rows = int(random.integers(0, 6))
    return pd.DataFrame({name: _values(random, _leaf_dtype(column), (rows,))
                         for name, column in row.get("properties", {}).items()})


def binary_body(operation: Any, media_type: str, seed: bytes) -> bytes:
    random = _generator(seed)
    if media_type == NPY:
        return npy_body(random, _json_schema(operation))
    offered = operation.get_request_payload_content_types()
    if media_type == OCTET_STREAM:
        if PARQUET in offered:
            media_type = PARQUET
        else:
            assert any(kind.startswith("image/") for kind in offered), \
                f"{operation.label}: no generator for {OCTET_STREAM} here"
            return image_bytes(random, str(random.choice(list(_IMAGE_FORMATS.values()))))
    frame = table(random, _json_schema(operation))
    if media_type == CSV:
        return frame.to_csv(index=False).encode()
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def _with_images(value: Any, random: np.random.Generator) -> Any:
    """``value`` with a real PNG's base64 for every ``b64`` string in it."""
    if isinstance(value, dict):
        return {key: base64.b64encode(image_bytes(random, "PNG")).decode()
                if key == "b64" and isinstance(item, str) else _with_images(item, random)
                for key, item in value.items()}
    if isinstance(value, list):
        return [_with_images(item, random) for item in value]
    return value


def _json_parts(operation: Any, body: dict[str, Any]) -> dict[str, Any]:
    form = operation.get_body_for_media_type("multipart/form-data")
    encoding = form.definition.get("encoding", {}) if form is not None else {}
    return {name: json.dumps(value) if isinstance(value, list)
            and encoding.get(name, {}).get("contentType") == JSON_TYPE else value
            for name, value in body.items()}


def not_a_file(media_type: str, seed: bytes) -> bytes:
    """A body that starts like a file of ``media_type`` but is not one (for negative cases)."""
    magic = {NPY: b"\x93NUMPY\x01\x00", PARQUET: b"PAR1", OCTET_STREAM: b"PAR1",
             "image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff",
             "image/gif": b"GIF89a", "image/bmp": b"BM"}
    if media_type == CSV:  # a table of text where the example's columns hold numbers
        return b"a,b\nnot a number," + seed.hex().encode() + b"\n"
    return magic[media_type] + seed


def _is_negative(case: Any) -> bool:
    return case.meta is not None and case.meta.generation.mode.is_negative


def _send_instead(case: Any, body: Any) -> None:
    """Send ``body`` as the case's body, keeping whether the case was drawn valid or invalid.

    Schemathesis re-judges a body a hook replaced against its JSON schema, and judges raw bytes
    invalid whatever they hold: a real Parquet file would turn a positive case into a negative
    one. The replacement is the drawn value in its wire form, so the verdict stays the draw's
    (schemathesis' own bookkeeping, 4.x: the hash it just stored makes the body clean again).
    """
    case.body = body
    if case._meta is not None:
        case._meta.clear_dirty(ParameterLocation.BODY)


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    operation = context.operation
    body = case.body
    meta = case.meta
    negative = meta is not None and meta.generation.mode.is_negative
    if isinstance(body, bytes) and case.media_type in MEDIA_TYPES:
        # Schemathesis draws raw bodies of registered media types from their strategy in
        # negative cases too (there is no schema to violate): such a case claims to be
        # invalid, so it gets a body that is not a valid file, which the server must refuse.
        if negative:
            _send_instead(case, not_a_file(case.media_type, body[-8:]))
        elif body.startswith(SEED):
            _send_instead(case, binary_body(operation, case.media_type, body))
    elif case.media_type == "multipart/form-data" and isinstance(body, dict):
        parts = _json_parts(operation, body)
        for name, part_type in (case.multipart_content_types or {}).items():
            value = parts.get(name)
            if part_type in MEDIA_TYPES and isinstance(value, bytes):
                parts[name] = not_a_file(part_type, value[-8:]) if negative \
                    else binary_body(operation, part_type, value) if value.startswith(SEED) \
                    else value
        _send_instead(case, parts)
    elif case.media_type == JSON_TYPE and not negative and any(
            kind.startswith("image/") for kind in operation.get_request_payload_content_types()):
        digest = hashlib.sha256(json.dumps(body, default=str).encode()).digest()
        _send_instead(case, _with_images(body, _generator(digest)))
    return case
