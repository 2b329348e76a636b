"""``dosirak.validators`` on class-style API parameters, as BentoML 1.2 code writes them, over a
real ``dosirak serve``: shapes and dtypes of arrays, a DataFrame's columns, a file's type."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from live_server import Served

from .serving import served

SERVICE = '''
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd

import dosirak as bentoml
from dosirak.validators import ContentType, DataframeSchema, DType, Shape


@bentoml.service
class Validated:
    @bentoml.api
    def classify(self, x: Annotated[np.ndarray, Shape((-1, 4)), DType("float32")]) -> np.ndarray:
        assert x.dtype == np.float32
        return x.sum(axis=1)

    @bentoml.api
    def score(self, table: Annotated[pd.DataFrame,
                                     DataframeSchema(orient="records", columns=["a", "b"])]
              ) -> list:
        return list(table.columns) + [float(table["a"].sum())]

    @bentoml.api
    def size(self, image: Annotated[Path, ContentType("image/jpeg")]) -> int:
        return image.stat().st_size
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served(tmp_path_factory.mktemp("validators"), SERVICE, "Validated") as server:
        yield server


def test_shape_and_dtype(server: Served) -> None:
    assert server.post("/classify", [[1, 2, 3, 4]])[::2] == (200, [10.0])
    assert server.post("/classify", {"x": [[1, 2, 3, 4]]})[::2] == (200, [10.0])  # 1.2 body
    status, _, body = server.post("/classify", [[1, 2, 3]])
    assert status == 400 and "shape" in body["error"]
    schema = json.loads(server.get("/docs.json")[1])
    assert "classify" in json.dumps(schema)


def test_dataframe_schema(server: Served) -> None:
    status, _, body = server.post("/score", [{"a": 1, "b": 2}, {"a": 3, "b": 4}])
    assert (status, body) == (200, ["a", "b", 4.0])
    status, _, body = server.post("/score", [{"a": 1}])
    assert status == 400, body


def test_content_type(server: Served) -> None:
    status, _, body = server.request("POST", "/size", b"\xff\xd8\xff\xe0jpeg bytes",
                                     {"content-type": "image/jpeg"})
    assert (status, json.loads(body)) == (200, 14)
    status, _, _ = server.request("POST", "/size", b"GIF89a", {"content-type": "image/gif"})
    assert status == 415
