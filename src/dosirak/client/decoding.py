"""Response bodies to Python values, chosen by the answer's Content-Type.

``application/x-npy`` becomes a numpy array (read without pickle), JSON becomes plain Python
values, ``text/*`` a ``str``, CSV and Parquet a pandas DataFrame (when pandas, and for Parquet
pyarrow, are installed), ``image/*`` a PIL image (when Pillow is installed), multipart/form-data
a dict of its decoded parts, and anything else ``bytes``.
"""

from __future__ import annotations

import importlib.util
import io
from typing import Any

import orjson

from dosirak.exceptions import BadInput, RemoteError
from dosirak.io.base import parse_content_type

NPY_MEDIA_TYPE = "application/x-npy"
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"


def decode_body(data: bytes, content_type: str | None) -> Any:
    """The Python value of a response body of type ``content_type``."""
    media_type, params = parse_content_type(content_type)
    try:
        return _decode(data, media_type or "application/octet-stream", params)
    except (BadInput, ValueError, OSError) as error:  # orjson's error is a ValueError
        raise RemoteError(f"the service answered a malformed {media_type} body: {error}",
                          status=200) from None


def _decode(data: bytes, media_type: str, params: dict[str, str]) -> Any:
    if media_type == NPY_MEDIA_TYPE:
        from dosirak.io.numpy import load_npy

        return load_npy(data)
    if media_type == "application/json" or media_type.endswith("+json"):
        return orjson.loads(data)
    if media_type == "text/csv" and _installed("pandas"):
        import pandas

        return pandas.read_csv(io.BytesIO(data))
    if media_type.startswith("text/"):
        return data.decode(params.get("charset", "utf-8"), errors="replace")
    if media_type == PARQUET_MEDIA_TYPE and _installed("pandas") and _installed("pyarrow"):
        import pandas

        return pandas.read_parquet(io.BytesIO(data))
    if media_type.startswith("image/") and _installed("PIL"):
        from PIL import Image

        image = Image.open(io.BytesIO(data))
        image.load()  # read it now: the bytes are not kept open behind the image
        return image
    if media_type == "multipart/form-data":
        from dosirak.io.form import parse_form

        return {part.name: _decode(bytes(part.data), part.media_type or
                                   "application/octet-stream", part.params)
                for part in parse_form(data, params)}
    return data


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
