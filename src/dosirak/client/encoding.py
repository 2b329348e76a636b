"""Python values to request bodies, in a media type the API's OpenAPI document says it reads.

- numpy arrays: ``.npy`` when offered (exact dtype, no text round trip), else JSON lists
- pandas DataFrames: JSON in the layout (``orient``) the API's schema shows while they are small
  and hold only JSON types; Parquet when larger, when a column has a type JSON loses (dates,
  categories), or when the layout cannot be told; CSV when Parquet cannot be written here
- str: ``text/plain`` when offered, else a JSON string
- PIL images: a raw image body (PNG unless the API names formats), else a form upload
- files (``pathlib.Path`` or an open binary file): a form upload keeping the file name, else raw
- bytes: a raw body, typed by its leading bytes when the API names image formats
- anything else (dicts, lists, numbers, pydantic models, dataclasses, Series): JSON
- ``Body(data, content_type)``: sent exactly as given

Multipart inputs are keyword arguments, sent as a multipart/form-data body with a part per
field, each part typed as the document's ``encoding`` says.
"""

from __future__ import annotations

import importlib.util
import io
import mimetypes
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from dosirak.client.schema import FORM_MEDIA_TYPE, RemoteAPI, form_field_name
from dosirak.exceptions import InvalidArgument
from dosirak.io.encoding import dumps
from dosirak.io.form import write_form

JSON_MEDIA_TYPE = "application/json"
NPY_MEDIA_TYPE = "application/x-npy"
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"
CSV_MEDIA_TYPE = "text/csv"
TEXT_MEDIA_TYPE = "text/plain"
OCTET_STREAM = "application/octet-stream"
#: Measured here: below about this many cells a DataFrame is quicker to write and for the server
#: to read as JSON (2 rows: 0.2 ms against 3 ms as Parquet); above it Parquet wins (40,000
#: cells: 12 ms against 68 ms), and it is a third smaller.
PARQUET_MIN_CELLS = 10_000
# Image formats told apart by their first bytes, so raw bytes get the type the API asks for.
_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"), (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"),
)


@dataclass(frozen=True)
class Body:
    """A request body sent as is: ``client.predict(Body(csv_bytes, "text/csv"))``."""

    data: bytes
    content_type: str


def encode_call(api: RemoteAPI, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Body:
    """The request body for calling ``api`` with ``args`` and ``kwargs``."""
    if api.fields is not None:
        if args:
            raise InvalidArgument(f"API {api.name!r} takes keyword arguments "
                                  f"({', '.join(api.fields)}), not positional ones: call "
                                  f"{api.name}({', '.join(f'{f}=...' for f in api.fields)})")
        return encode_fields(api, kwargs)
    if api.parameter is not None and not args:
        if list(kwargs) == [api.parameter]:  # client.classify(input_series=x), as in 1.2
            value = kwargs[api.parameter]
            if api.keyed and (isinstance(value, dict) or hasattr(value, "model_dump")):
                # A bare object could read as the keyed form: send that form itself.
                return Body(_json({api.parameter: value}, api.name), JSON_MEDIA_TYPE)
            return encode_value(api, value)
        if not kwargs and not api.parameter_required:
            return Body(b"{}", JSON_MEDIA_TYPE)  # the 1.2 body of a call without it
    if kwargs or len(args) != 1:
        raise InvalidArgument(f"API {api.name!r} takes one value, got {len(args)} positional and "
                              f"{len(kwargs)} keyword argument(s); call client.{api.name}(value)")
    return encode_value(api, args[0])


def encode_value(api: RemoteAPI, value: Any) -> Body:
    """The body for ``value`` as the single input of ``api``."""
    offered = api.request
    if isinstance(value, Body):
        return value
    module = type(value).__module__.partition(".")[0]
    if module == "numpy" and hasattr(value, "dtype"):
        return _array_body(value, offered, api)
    if module == "pandas" and hasattr(value, "columns"):
        return _frame_body(value, offered, offered.get(JSON_MEDIA_TYPE, {}), api)
    if _is_pil_image(value):
        return _image_body(value, api)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _bytes_body(bytes(value), None, api)
    if isinstance(value, PurePath) or _is_binary_file(value):
        return _file_body(value, api)
    if isinstance(value, str):
        if TEXT_MEDIA_TYPE in offered:
            return Body(value.encode("utf-8"), "text/plain; charset=utf-8")
        if JSON_MEDIA_TYPE not in offered:
            return _bytes_body(value.encode("utf-8"), None, api)
    if JSON_MEDIA_TYPE in offered:
        return Body(_json(value, api.name), JSON_MEDIA_TYPE)
    raise _cannot_send(value, api)


def encode_fields(api: RemoteAPI, values: dict[str, Any]) -> Body:
    """A multipart/form-data body with one part per keyword argument."""
    assert api.fields is not None
    if FORM_MEDIA_TYPE not in api.request:
        raise InvalidArgument(f"API {api.name!r} has fields but its document offers no "
                              f"{FORM_MEDIA_TYPE} body; it reads {list(api.request)}")
    unknown = [name for name in values if name not in api.fields]
    if unknown:
        raise InvalidArgument(f"API {api.name!r} has no field(s) {unknown}; its fields are "
                              f"{list(api.fields)}")
    parts = []
    for name, value in values.items():
        data, content_type, filename = _part(api, name, value)
        parts.append((name, data, content_type, filename))
    data, content_type = write_form(parts)
    return Body(data, content_type)


def _part(api: RemoteAPI, name: str, value: Any) -> tuple[bytes, str, str | None]:
    assert api.fields is not None
    part_type = api.fields[name]
    if isinstance(value, Body):
        return value.data, value.content_type, None
    if part_type not in (JSON_MEDIA_TYPE, TEXT_MEDIA_TYPE):  # a file or image field
        data, content_type, filename = _binary(value, f"field {name!r} of {api.name!r}")
        # application/octet-stream means "any bytes" (a File field): the file's own type
        # tells the server more; any other field type is what the part must say it is.
        if part_type != OCTET_STREAM and not _accepts(part_type, content_type):
            content_type = part_type if "*" not in part_type else OCTET_STREAM
        return data, content_type, filename or name
    if part_type == TEXT_MEDIA_TYPE and isinstance(value, str):
        return value.encode("utf-8"), "text/plain; charset=utf-8", None
    if type(value).__module__.startswith("pandas") and hasattr(value, "columns"):
        orient = _orient(api.field_schemas.get(name, {})) or "records"
        return _frame_json(value, orient), JSON_MEDIA_TYPE, None
    return _json(value, api.name), JSON_MEDIA_TYPE, None


# ----- by kind of value ----------------------------------------------------------------------

def _array_body(value: Any, offered: dict[str, Any], api: RemoteAPI) -> Body:
    import numpy

    from dosirak.io.numpy import dump_npy

    array = numpy.asarray(value)  # numpy scalars too
    if NPY_MEDIA_TYPE in offered and not array.dtype.hasobject:  # object arrays need pickle
        return Body(dump_npy(array), NPY_MEDIA_TYPE)
    if JSON_MEDIA_TYPE in offered:
        return Body(_json(array, api.name), JSON_MEDIA_TYPE)
    raise _cannot_send(value, api)


def _frame_body(frame: Any, offered: dict[str, Any], schema: dict[str, Any],
                api: RemoteAPI) -> Body:
    orient = _orient(schema) if JSON_MEDIA_TYPE in offered else None
    small = frame.size < PARQUET_MIN_CELLS and _json_faithful(frame)
    if orient is not None and small:
        return Body(_frame_json(frame, orient), JSON_MEDIA_TYPE)
    if PARQUET_MEDIA_TYPE in offered and importlib.util.find_spec("pyarrow") is not None:
        buffer = io.BytesIO()
        frame.to_parquet(buffer)
        return Body(buffer.getvalue(), PARQUET_MEDIA_TYPE)
    if orient is not None:
        return Body(_frame_json(frame, orient), JSON_MEDIA_TYPE)
    if CSV_MEDIA_TYPE in offered:
        return Body(frame.to_csv(index=False).encode("utf-8"), "text/csv; charset=utf-8")
    if JSON_MEDIA_TYPE in offered:  # an API that takes any JSON: a list of row objects
        return Body(_frame_json(frame, "records"), JSON_MEDIA_TYPE)
    raise _cannot_send(frame, api)


def _image_body(image: Any, api: RemoteAPI) -> Body:
    from PIL import Image as PILImage

    offered = api.request
    saveable = {mime: name for name, mime in PILImage.MIME.items() if name in PILImage.SAVE}
    chosen = next((m for m in offered if m.startswith("image/") and m in saveable), None)
    if chosen is None and ("image/*" in offered or OCTET_STREAM in offered):
        chosen = "image/png"  # lossless, and every image reader knows it
    if chosen is not None:
        return Body(_save_image(image, saveable[chosen]),
                    chosen if _offered(offered, chosen) else OCTET_STREAM)
    if FORM_MEDIA_TYPE in offered:
        return _upload(api, _save_image(image, "PNG"), "image/png", "image.png")
    raise _cannot_send(image, api)


def _file_body(value: Any, api: RemoteAPI) -> Body:
    data, content_type, filename = _binary(value, f"the input of {api.name!r}")
    if FORM_MEDIA_TYPE in api.request:  # a form keeps the file's name and type
        return _upload(api, data, content_type, filename or "file")
    return _bytes_body(data, filename, api)


def _bytes_body(data: bytes, filename: str | None, api: RemoteAPI) -> Body:
    offered = api.request
    guessed = _guess_type(data, filename)
    if guessed is not None and _offered(offered, guessed):
        return Body(data, guessed)
    if OCTET_STREAM in offered or "*/*" in offered:
        return Body(data, OCTET_STREAM)
    if FORM_MEDIA_TYPE in offered:
        return _upload(api, data, guessed or OCTET_STREAM, filename or "file")
    raise _cannot_send(data, api)


def _upload(api: RemoteAPI, data: bytes, content_type: str, filename: str) -> Body:
    body, form_type = write_form([(form_field_name(api), data, content_type, filename)])
    return Body(body, form_type)


# ----- helpers ----------------------------------------------------------------------------

def _binary(value: Any, where: str) -> tuple[bytes, str, str | None]:
    """The bytes, media type and file name of a file, path, image or bytes value."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return data, _guess_type(data, None) or OCTET_STREAM, None
    if isinstance(value, PurePath):
        data = Path(value).read_bytes()
        return data, _guess_type(data, value.name) or OCTET_STREAM, value.name
    if _is_pil_image(value):
        return _save_image(value, "PNG"), "image/png", "image.png"
    if _is_binary_file(value):
        data = value.read()
        name = getattr(value, "name", None)
        filename = PurePath(name).name if isinstance(name, str) else None
        return data, _guess_type(data, filename) or OCTET_STREAM, filename
    raise InvalidArgument(f"{where} is a file; pass bytes, a pathlib.Path, a binary file object "
                          f"or a PIL image, not {type(value).__name__}")


def _guess_type(data: bytes, filename: str | None) -> str | None:
    for signature, media_type in _IMAGE_SIGNATURES:
        if data.startswith(signature):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return mimetypes.guess_type(filename)[0] if filename else None


def _offered(offered: dict[str, Any] | tuple[str, ...], media_type: str) -> bool:
    return any(_accepts(candidate, media_type) for candidate in offered)


def _accepts(pattern: str, media_type: str) -> bool:
    return pattern in ("*/*", media_type) or (
        pattern.endswith("/*") and media_type.startswith(pattern[:-1]))


def _save_image(image: Any, image_format: str) -> bytes:
    if image_format == "JPEG" and image.mode not in ("RGB", "L", "CMYK"):
        image = image.convert("RGB")  # JPEG has no alpha channel
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def _orient(schema: dict[str, Any]) -> str | None:
    """The pandas ``orient`` a table schema shows, or None when it cannot be told."""
    kind, items = schema.get("type"), schema.get("items")
    if kind == "array" and isinstance(items, dict):
        return {"object": "records", "array": "values"}.get(str(items.get("type")))
    if kind != "object":
        return None
    if "data" in schema.get("required", ()):
        return "split"
    properties = schema.get("properties")
    if properties and all(isinstance(p, dict) and p.get("type") == "object"
                          for p in properties.values()):
        return "columns"  # {column: {index: value}}
    rows = schema.get("additionalProperties")
    if isinstance(rows, dict) and rows.get("properties"):
        return "index"  # {index: {column: value}}
    return None  # "columns" and "index" without column names look alike


def _frame_json(frame: Any, orient: str) -> bytes:
    return frame.to_json(orient=orient, date_format="iso").encode("utf-8")


def _json_faithful(frame: Any) -> bool:
    # Numbers, booleans and text come back from JSON as they went; dates, durations,
    # categories and the like arrive as strings, so they go as Parquet.
    return all(dtype.kind in "biufO" or str(dtype) in ("string", "str")
               for dtype in frame.dtypes)


def _json(value: Any, api_name: str) -> bytes:
    try:
        return dumps(value)
    except TypeError as error:
        raise InvalidArgument(f"cannot send the input of {api_name!r} as JSON: {error}") from None


def _is_pil_image(value: Any) -> bool:
    return type(value).__module__.startswith("PIL.") and hasattr(value, "save") and \
        hasattr(value, "mode")


def _is_binary_file(value: Any) -> bool:
    return hasattr(value, "read") and not isinstance(value, io.TextIOBase)


def _cannot_send(value: Any, api: RemoteAPI) -> InvalidArgument:
    return InvalidArgument(f"cannot send a {type(value).__name__} to API {api.name!r}: it reads "
                           f"{list(api.request)}. Pass a value of a matching kind, or "
                           f"dosirak.client.Body(data, content_type) to send bytes as they are")
