"""The other input adapters and outputs over real HTTP: what the API function gets, batched and
not, and what each request gets back."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pandas as pd
from PIL import Image

from dosirak import BentoService, api
from dosirak.adapters import (
    DataframeInput,
    DataframeOutput,
    FileInput,
    ImageInput,
    JsonInput,
    JsonOutput,
    MultiFileInput,
    MultiImageInput,
    StringInput,
)
from live_server import serve


class Everything(BentoService):
    @api(input=ImageInput(), batch=True)
    def shape(self, images):
        assert isinstance(images, list) and all(isinstance(i, np.ndarray) for i in images)
        return [list(image.shape) for image in images]

    @api(input=MultiImageInput(input_names=("left", "right")), batch=False)
    def widths(self, left, right):
        return [left.shape[1], right.shape[1]]

    @api(input=FileInput(), batch=True)
    def size(self, files):
        return [len(file.read()) for file in files]

    @api(input=MultiFileInput(input_names=("a", "b")), batch=True)
    def both(self, a, b):
        return [len(x.read()) + len(y.read()) for x, y in zip(a, b, strict=True)]

    @api(input=StringInput(), batch=True)
    def shout(self, texts):
        return [text.upper() for text in texts]

    @api(input=JsonInput(), output=JsonOutput(), batch=True)
    def total(self, items):
        return [sum(item["values"]) for item in items]

    @api(input=DataframeInput(orient="records", columns=["a", "b"], dtype={"a": "float64",
                                                                           "b": "float64"}),
         output=DataframeOutput(output_orient="records"), batch=True)
    def add(self, df: pd.DataFrame):
        return pd.DataFrame({"sum": df["a"] + df["b"]})


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 128).save(buffer, "PNG")
    return buffer.getvalue()


def test_adapters_answer_each_request_with_its_own_rows() -> None:
    with serve(Everything().to_service()) as url:
        answer = httpx.post(f"{url}/shape", content=_png(4, 3),
                            headers={"content-type": "image/png"})
        assert (answer.status_code, answer.json()) == (200, [3, 4, 3])  # RGB by default
        answer = httpx.post(f"{url}/widths", files={"left": ("l.png", _png(5, 2)),
                                                    "right": ("r.png", _png(7, 2))})
        assert (answer.status_code, answer.json()) == (200, [5, 7])
        answer = httpx.post(f"{url}/size", content=b"12345",
                            headers={"content-type": "application/octet-stream"})
        assert (answer.status_code, answer.json()) == (200, 5)
        answer = httpx.post(f"{url}/both", files={"a": ("a", b"xx"), "b": ("b", b"yyy")})
        assert (answer.status_code, answer.json()) == (200, 5)
        answer = httpx.post(f"{url}/shout", content="hello",
                            headers={"content-type": "text/plain"})
        assert (answer.status_code, answer.json()) == (200, "HELLO")
        answer = httpx.post(f"{url}/add", json=[{"a": 1, "b": 2}, {"a": 3.5, "b": 4}])
        assert (answer.status_code, answer.json()) == (200, [{"sum": 3.0}, {"sum": 7.5}])
        answer = httpx.post(f"{url}/add", json=[{"a": "x", "b": 2}])
        assert answer.status_code == 400 and "a" in answer.json()["error"]
        answer = httpx.post(f"{url}/shape", content=b"not an image",
                            headers={"content-type": "image/png"})
        assert answer.status_code == 400

        def total(n: int) -> object:
            return httpx.post(f"{url}/total", json={"values": list(range(n))}).json()

        with ThreadPoolExecutor(8) as pool:  # merged or not, each gets its own answer
            assert list(pool.map(total, range(24))) == [sum(range(n)) for n in range(24)]
