"""Multipart over real HTTP: forms and JSON objects of named fields, and multipart responses."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pydantic
import pytest
from PIL import Image as PILImage

import dosirak
from dosirak.exceptions import InvalidArgument
from dosirak.io import JSON, Image, Multipart, NumpyNdarray, Text
from dosirak.io.base import parse_content_type
from dosirak.io.form import parse_form
from live_server import serve


class Meta(pydantic.BaseModel):
    scale: float
    label: str


def png() -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (2, 2), (0, 255, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    svc = dosirak.Service("multipart_io")

    @svc.api(input=Multipart(arr=NumpyNdarray(dtype="float64", shape=(-1, 2),
                                              enforce_shape=True),
                             meta=JSON(pydantic_model=Meta), note=Text()),
             output=JSON())
    def combine(arr: np.ndarray, meta: Meta, note: str) -> dict[str, Any]:
        return {"scaled": (arr * meta.scale).tolist(), "label": meta.label, "note": note}

    @svc.api(input=Multipart(image=Image(), caption=Text()), output=JSON())
    def caption(image: PILImage.Image, caption: str) -> dict[str, Any]:
        return {"size": list(image.size), "caption": caption}

    @svc.api(input=JSON(), output=Multipart(arr=NumpyNdarray(), image=Image(), info=JSON()))
    def split(value: Any) -> dict[str, Any]:
        return {"arr": np.arange(3), "image": PILImage.new("L", (1, 1)), "info": value}

    with serve(svc) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http


EXPECTED = {"scaled": [[2.0, 4.0]], "label": "x", "note": "hi"}


def test_form_with_typed_parts(client: httpx.Client) -> None:
    files = {
        "arr": (None, json.dumps([[1, 2]]), "application/json"),
        "meta": (None, json.dumps({"scale": 2, "label": "x"}), "application/json"),
        "note": (None, "hi", "text/plain"),
    }
    response = client.post("/combine", files=files)
    assert response.status_code == 200, response.text
    assert response.json() == EXPECTED


def test_plain_form_fields_use_each_descriptors_default_type(client: httpx.Client) -> None:
    data = {"arr": "[[1, 2]]", "meta": '{"scale": 2, "label": "x"}', "note": "hi"}
    response = client.post("/combine", files={name: (None, value) for name, value in data.items()})
    assert response.json() == EXPECTED


def test_one_json_object_with_a_key_per_field(client: httpx.Client) -> None:
    response = client.post("/combine", json={"arr": [[1, 2]], "meta": {"scale": 2, "label": "x"},
                                             "note": "hi"})
    assert response.json() == EXPECTED


def test_npy_part(client: httpx.Client) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([[1.0, 2.0]]))
    files = {"arr": ("arr.npy", buffer.getvalue(), "application/x-npy"),
             "meta": (None, '{"scale": 2, "label": "x"}', "application/json"),
             "note": (None, "hi")}
    assert client.post("/combine", files=files).json() == EXPECTED


def test_errors_name_the_field(client: httpx.Client) -> None:
    bad_meta = client.post("/combine", json={"arr": [[1, 2]], "meta": {"scale": "big",
                                                                       "label": "x"},
                                             "note": "hi"})
    assert bad_meta.status_code == 400
    assert bad_meta.json()["detail"][0]["loc"] == ["meta", "scale"]
    bad_axis = client.post("/combine", json={"arr": [[1, 2, 3]], "meta": {"scale": 1,
                                                                          "label": "x"},
                                             "note": "hi"})
    assert bad_axis.json()["detail"][0]["loc"] == ["arr", "body", "axis 1"]
    missing = client.post("/combine", json={"arr": [[1, 2]]})
    assert missing.status_code == 400
    assert {tuple(d["loc"]) for d in missing.json()["detail"]} == {("meta",), ("note",)}
    unknown = client.post("/combine", files={"nope": (None, "1")})
    assert unknown.status_code == 400 and "unknown field 'nope'" in unknown.json()["error"]
    twice = client.post("/combine", files=[("note", (None, "a")), ("note", (None, "b"))])
    assert twice.status_code == 400 and "sent twice" in twice.json()["error"]
    wrong_type = client.post("/combine", files={"note": ("x.png", png(), "image/png")})
    assert wrong_type.status_code == 400 and "cannot be image/png" in wrong_type.json()["error"]
    not_object = client.post("/combine", json=[1, 2])
    assert not_object.status_code == 400


def test_image_part_and_base64_in_json(client: httpx.Client) -> None:
    form = client.post("/caption", files={"image": ("g.png", png(), "image/png"),
                                          "caption": (None, "green")})
    assert form.json() == {"size": [2, 2], "caption": "green"}
    as_json = client.post("/caption", json={"image": {"b64": base64.b64encode(png()).decode()},
                                            "caption": "green"})
    assert as_json.json() == {"size": [2, 2], "caption": "green"}


def test_truncated_form_is_400(client: httpx.Client) -> None:
    request = httpx.Request("POST", "http://x/", files={"caption": (None, "green")})
    body = request.read()
    response = client.post("/caption", content=body[:-10],
                           headers={"content-type": request.headers["content-type"]})
    assert response.status_code == 400 and "closing boundary" in response.json()["error"]
    no_boundary = client.post("/caption", content=body,
                              headers={"content-type": "multipart/form-data"})
    assert no_boundary.status_code == 400 and "boundary" in no_boundary.json()["error"]


def test_multipart_response(client: httpx.Client) -> None:
    response = client.post("/split", json={"k": 1})
    assert response.status_code == 200
    media_type, params = parse_content_type(response.headers["content-type"])
    assert media_type == "multipart/form-data"
    parts = {part.name: part for part in parse_form(response.content, params)}
    assert json.loads(parts["arr"].data) == [0, 1, 2]
    assert json.loads(parts["info"].data) == {"k": 1}
    assert parts["image"].content_type == "image/png" and parts["image"].filename == "image"
    assert PILImage.open(io.BytesIO(bytes(parts["image"].data))).size == (1, 1)


def test_declaration_errors() -> None:
    with pytest.raises(InvalidArgument, match="at least one field"):
        Multipart()
    with pytest.raises(InvalidArgument, match="must be an IO descriptor"):
        Multipart(a=np.ndarray)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="not nested"):
        Multipart(a=Multipart(b=Text()))
