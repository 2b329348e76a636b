"""How values become request bodies, decided from a real service's OpenAPI document."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image as PILImage

from dosirak.client.encoding import Body, encode_call
from dosirak.client.schema import RemoteAPI, apis_from_openapi
from dosirak.exceptions import InvalidArgument
from dosirak.io.form import parse_form
from dosirak.io.numpy import load_npy
from dosirak.server.openapi import build_openapi

from .services import image_bytes, media_service, png, table_service


@pytest.fixture(scope="module")
def apis() -> dict[str, RemoteAPI]:
    return {**apis_from_openapi(build_openapi(table_service())),
            **apis_from_openapi(build_openapi(media_service()))}


def test_arrays_as_npy_and_scalars() -> None:
    api = RemoteAPI("a", "/a", {"application/json": {}, "application/x-npy": {}}, ())
    body = encode_call(api, (np.float32(1.5),), {})
    assert body.content_type == "application/x-npy"
    assert load_npy(body.data).dtype == np.float32
    json_only = RemoteAPI("j", "/j", {"application/json": {}}, ())
    assert encode_call(json_only, (np.arange(3),), {}) == Body(b"[0,1,2]", "application/json")


@pytest.mark.parametrize(("api", "expected"), [
    ("scale_split", b'{"columns":["a"],"index":[0,1],"data":[[1],[2]]}'),
    ("scale_columns", b'{"a":{"0":1,"1":2}}'),
    ("scale_index", b'{"0":{"a":1},"1":{"a":2}}'),
    ("info", b'[{"a":1},{"a":2}]'),
])
def test_frame_layouts(apis: dict[str, RemoteAPI], api: str, expected: bytes) -> None:
    body = encode_call(apis[api], (pd.DataFrame({"a": [1, 2]}),), {})
    assert body == Body(expected, "application/json")


def test_frames_without_parquet_fall_back_to_csv() -> None:
    api = RemoteAPI("t", "/t", {"application/json": {"type": "object"}, "text/csv": {}}, ())
    body = encode_call(api, (pd.DataFrame({"a": [1, 2]}),), {})
    assert body == Body(b"a\n1\n2\n", "text/csv; charset=utf-8")


def test_frames_to_any_json_api_are_records(apis: dict[str, RemoteAPI]) -> None:
    body = encode_call(apis["keys"], (pd.DataFrame({"a": [1]}),), {})
    assert body == Body(b'[{"a":1}]', "application/json")


def test_images(apis: dict[str, RemoteAPI]) -> None:
    picture = png()
    body = encode_call(apis["flip"], (picture,), {})
    assert body.content_type == "image/png"
    assert PILImage.open(io.BytesIO(body.data)).size == picture.size
    jpeg = encode_call(apis["jpeg_size"], (picture.convert("RGBA"),), {})
    assert jpeg.content_type == "image/jpeg"  # the API's only format; alpha dropped for JPEG
    assert jpeg.data.startswith(b"\xff\xd8\xff")
    gif = encode_call(apis["flip"], (image_bytes(picture, "GIF"),), {})
    assert gif.content_type == "image/gif"
    unknown = encode_call(apis["flip"], (b"not an image",), {})
    assert unknown.content_type == "application/octet-stream"


def test_files_as_uploads(apis: dict[str, RemoteAPI], tmp_path) -> None:
    path = tmp_path / "table.csv"
    path.write_text("a\n1\n")
    body = encode_call(apis["facts"], (path,), {})
    media_type, _, boundary = body.content_type.partition("; boundary=")
    assert media_type == "multipart/form-data"
    [part] = parse_form(body.data, {"boundary": boundary})
    assert (part.name, part.filename, part.content_type, bytes(part.data)) == \
        ("file", "table.csv", "text/csv", b"a\n1\n")


def test_text_where_no_text_is_read(apis: dict[str, RemoteAPI]) -> None:
    assert encode_call(apis["shout"], ("hé",), {}) == \
        Body("hé".encode(), "text/plain; charset=utf-8")
    assert encode_call(apis["keys"], ("hé",), {}) == Body('"hé"'.encode(), "application/json")
    assert encode_call(apis["facts"], ("hé",), {}) == \
        Body("hé".encode(), "application/octet-stream")


def test_fields(apis: dict[str, RemoteAPI]) -> None:
    api = apis["everything"]
    assert api.fields == {"image": "image/*", "rows": "application/json", "note": "text/plain",
                          "flower": "application/json", "upload": "application/octet-stream",
                          "table": "application/json"}
    body = encode_call(api, (), {"image": png(), "rows": np.eye(2), "note": "n",
                                 "upload": b"\x89PNG\r\n\x1a\n...",
                                 "table": pd.DataFrame({"c": [1]})})
    boundary = body.content_type.partition("; boundary=")[2]
    parts = {part.name: part for part in parse_form(body.data, {"boundary": boundary})}
    assert (parts["image"].content_type, parts["image"].filename) == ("image/png", "image.png")
    assert bytes(parts["rows"].data) == b"[[1.0,0.0],[0.0,1.0]]"
    assert parts["note"].content_type == "text/plain; charset=utf-8"
    assert parts["upload"].content_type == "image/png"  # a File field keeps the file's own type
    assert bytes(parts["table"].data) == b'{"columns":["c"],"index":[0],"data":[[1]]}'


def test_values_that_cannot_be_sent(apis: dict[str, RemoteAPI]) -> None:
    with pytest.raises(InvalidArgument, match=r"cannot send a dict to API 'shout'"):
        encode_call(apis["shout"], ({"a": 1},), {})
    with pytest.raises(InvalidArgument, match="field 'upload' of 'everything' is a file"):
        encode_call(apis["everything"], (), {"upload": 3})
