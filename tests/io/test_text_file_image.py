"""Text, File and Image over real HTTP: raw bodies, form uploads, base64 JSON, and errors."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image as PILImage

import dosirak
from dosirak.exceptions import InvalidArgument
from dosirak.io import JSON, File, Image, Text, UploadedFile
from live_server import serve

SEEN_PATHS: list[Path] = []


def png_bytes(size: tuple[int, int] = (4, 3), color: tuple[int, ...] = (255, 0, 0, 128),
              fmt: str = "PNG") -> bytes:
    mode = "RGBA" if len(color) == 4 else "RGB"
    buffer = io.BytesIO()
    PILImage.new(mode, size, color).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    svc = dosirak.Service("media_io")

    @svc.api(input=Text(), output=Text())
    def shout(text: str) -> str:
        return text.upper() + "!"

    @svc.api(input=File(), output=JSON())
    def describe(upload: UploadedFile) -> dict[str, Any]:
        return {"size": len(upload.read()), "filename": upload.filename,
                "content_type": upload.content_type}

    @svc.api(input=File(kind="path"), output=File(mime_type="application/pdf"))
    def reverse(path: Path) -> bytes:
        SEEN_PATHS.append(path)
        assert path.is_file()
        return path.read_bytes()[::-1]

    @svc.api(input=Image(pilmode="RGB"), output=JSON())
    def inspect_image(image: PILImage.Image) -> dict[str, Any]:
        return {"size": list(image.size), "mode": image.mode,
                "pixel": list(image.getpixel((0, 0)))}

    @svc.api(input=Image(), output=Image(mime_type="image/jpeg"))
    def to_jpeg(image: PILImage.Image) -> PILImage.Image:
        return image

    @svc.api(input=Image(allowed_mime_types=["image/png"]), output=Image())
    def png_only(image: PILImage.Image) -> np.ndarray:
        return np.asarray(image.convert("L"))

    with serve(svc) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http


def test_text_round_trip_and_charsets(client: httpx.Client) -> None:
    response = client.post("/shout", content="안녕 dosirak".encode(),
                           headers={"content-type": "text/plain"})
    assert response.status_code == 200 and response.text == "안녕 DOSIRAK!"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    latin = client.post("/shout", content="café".encode("latin-1"),
                        headers={"content-type": "text/plain; charset=latin-1"})
    assert latin.text == "CAFÉ!"
    invalid = client.post("/shout", content=b"\xff\xfe", headers={"content-type": "text/plain"})
    assert invalid.status_code == 400 and "not valid utf-8" in invalid.json()["error"]
    unknown = client.post("/shout", content=b"x",
                          headers={"content-type": "text/plain; charset=klingon"})
    assert unknown.status_code == 400 and "unknown charset" in unknown.json()["error"]


def test_text_without_a_body_is_the_empty_text_and_the_schema_says_so(
        client: httpx.Client) -> None:
    # The empty text is a legitimate value and a request without a body sends it: the
    # document must not call the body required (it did, while the server answered 200).
    assert client.post("/shout").text == "!"
    assert client.post("/shout", content=b"", headers={"content-type": "text/plain"}).text == "!"
    request_body = client.get("/docs.json").json()["paths"]["/shout"]["post"]["requestBody"]
    assert request_body["required"] is False
    assert request_body["content"]["text/plain"]["schema"] == {"type": "string"}


def test_file_raw_body_and_form_upload(client: httpx.Client) -> None:
    raw = client.post("/describe", content=b"\x00" * 1000,
                      headers={"content-type": "application/octet-stream"})
    assert raw.json() == {"size": 1000, "filename": None,
                          "content_type": "application/octet-stream"}
    form = client.post("/describe", files={"file": ("notes.txt", b"hello", "text/plain")})
    assert form.json() == {"size": 5, "filename": "notes.txt", "content_type": "text/plain"}
    two = client.post("/describe", files={"a": ("a.txt", b"1"), "b": ("b.txt", b"2")})
    assert two.status_code == 400 and "exactly one file" in two.json()["error"]


def test_file_path_kind_is_a_temp_file_deleted_after_the_call(client: httpx.Client) -> None:
    response = client.post("/reverse", files={"file": ("doc.pdf", b"abc", "application/pdf")})
    assert response.status_code == 200
    assert response.content == b"cba"
    assert response.headers["content-type"] == "application/pdf"
    assert SEEN_PATHS[-1].suffix == ".pdf"
    assert not SEEN_PATHS[-1].exists()


def test_image_as_raw_body_form_and_base64(client: httpx.Client) -> None:
    data = png_bytes()
    expected = {"size": [4, 3], "mode": "RGB", "pixel": [255, 0, 0]}
    raw = client.post("/inspect_image", content=data, headers={"content-type": "image/png"})
    assert raw.status_code == 200 and raw.json() == expected
    form = client.post("/inspect_image", files={"image": ("red.png", data, "image/png")})
    assert form.json() == expected
    encoded = base64.b64encode(data).decode()
    assert client.post("/inspect_image", json={"b64": encoded}).json() == expected
    # TensorFlow Serving's layout, as seed 004 sends it.
    instances = client.post("/inspect_image", json={"instances": [{"b64": encoded}]})
    assert instances.json() == expected
    unknown_type = client.post("/inspect_image", content=data,
                               headers={"content-type": "application/octet-stream"})
    assert unknown_type.json() == expected


def test_image_output_formats(client: httpx.Client) -> None:
    jpeg = client.post("/to_jpeg", content=png_bytes(), headers={"content-type": "image/png"})
    assert jpeg.status_code == 200 and jpeg.headers["content-type"] == "image/jpeg"
    assert PILImage.open(io.BytesIO(jpeg.content)).format == "JPEG"
    from_array = client.post("/png_only", content=png_bytes(color=(0, 0, 255)),
                             headers={"content-type": "image/png"})
    image = PILImage.open(io.BytesIO(from_array.content))
    assert image.format == "PNG" and image.mode == "L" and image.size == (4, 3)


def test_bad_images_are_400(client: httpx.Client) -> None:
    corrupt = client.post("/inspect_image", content=png_bytes()[:30],
                          headers={"content-type": "image/png"})
    assert corrupt.status_code == 400 and "could not be read" in corrupt.json()["error"]
    not_base64 = client.post("/inspect_image", json={"b64": "***"})
    assert not_base64.status_code == 400 and "base64" in not_base64.json()["error"]
    two = client.post("/inspect_image", json={"instances": [{"b64": "AA=="}, {"b64": "AA=="}]})
    assert two.status_code == 400 and "one image per request" in two.json()["error"]
    jpeg = client.post("/png_only", content=png_bytes(color=(1, 2, 3), fmt="JPEG"),
                       headers={"content-type": "image/png"})
    assert jpeg.status_code == 400 and "not accepted" in jpeg.json()["error"]
    wrong_type = client.post("/png_only", content=png_bytes(),
                             headers={"content-type": "image/gif"})
    assert wrong_type.status_code == 415


def test_image_options_are_checked() -> None:
    with pytest.raises(InvalidArgument, match="cannot write"):
        Image(mime_type="image/x-unknown")
    with pytest.raises(InvalidArgument, match="pilmode"):
        Image(pilmode="RGBZ")
    with pytest.raises(InvalidArgument, match="kind must be"):
        File(kind="stream")


def test_from_sample() -> None:
    image = PILImage.open(io.BytesIO(png_bytes(fmt="PNG")))
    assert Image.from_sample(image).mime_type == "image/png"
    assert File.from_sample("report.pdf").mime_type == "application/pdf"
    assert Text.from_sample("hello").example() == "hello"
