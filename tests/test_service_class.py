"""The class style of services compiles to the same Service as the seeds' style, and serves."""

from __future__ import annotations

import asyncio
import pathlib
import threading
import time
from typing import Annotated, Any

import httpx
import numpy as np
import pandas as pd
import pydantic
import pytest
from PIL import Image as PILImage
from sklearn import datasets, svm

import dosirak
from dosirak.exceptions import InvalidArgument
from dosirak.io import (
    JSON,
    DType,
    File,
    Image,
    Multipart,
    NumpyNdarray,
    PandasDataFrame,
    PandasSeries,
    Shape,
    Text,
    descriptor_for,
)
from live_server import serve

SAMPLE = [[5.9, 3.0, 5.1, 1.8], [4.9, 3.0, 1.4, 0.2], [6.7, 3.1, 4.4, 1.4]]


@pytest.fixture
def iris_clf() -> svm.SVC:
    iris = datasets.load_iris()
    clf = svm.SVC(gamma="scale").fit(iris.data, iris.target)
    dosirak.sklearn.save_model("iris_clf", clf)
    return clf


def seeds_style() -> dosirak.Service:
    runner = dosirak.sklearn.get("iris_clf:latest").to_runner()
    svc = dosirak.Service("iris_classifier", runners=[runner])

    @svc.api(input=NumpyNdarray(), output=NumpyNdarray())
    def classify(input_series: np.ndarray) -> np.ndarray:
        """Classify iris flowers from their four measurements."""
        return runner.predict.run(input_series)

    return svc


def class_style() -> dosirak.Service:
    @dosirak.service(name="iris_classifier")
    class IrisClassifier:
        iris_model = dosirak.models.get("iris_clf:latest")

        def __init__(self) -> None:
            self.clf = dosirak.sklearn.load_model(self.iris_model)

        @dosirak.api
        def classify(self, input_series: np.ndarray) -> np.ndarray:
            """Classify iris flowers from their four measurements."""
            return self.clf.predict(input_series)

    return IrisClassifier


def test_class_style_gives_the_same_answers_and_openapi(iris_clf: svm.SVC) -> None:
    seeds, modern = seeds_style(), class_style()
    assert modern.to_spec()["apis"] == seeds.to_spec()["apis"]
    assert [model.tag for model in modern.models] == [dosirak.models.get("iris_clf:latest").tag]
    with serve(seeds) as seeds_url, serve(modern) as modern_url:
        answers = [httpx.post(f"{url}/classify", json=SAMPLE).json()
                   for url in (seeds_url, modern_url)]
        specs = [httpx.get(f"{url}/docs.json").json() for url in (seeds_url, modern_url)]
    assert answers[0] == answers[1] == iris_clf.predict(SAMPLE).tolist()
    # One difference, by design: the class style also reads 1.2's {"input_series": ...} body.
    keyed = specs[1]["paths"]["/classify"]["post"]["requestBody"]
    assert keyed.pop("x-dosirak-parameter")["keyed"] is True and keyed.pop("description")
    assert specs[0]["paths"]["/classify"]["post"]["requestBody"].pop(
        "x-dosirak-parameter")["keyed"] is False
    assert specs[0]["paths"] == specs[1]["paths"]
    assert specs[0]["components"] == specs[1]["components"]
    operation = specs[1]["paths"]["/classify"]["post"]
    assert operation["description"] == "Classify iris flowers from their four measurements."


def test_instance_is_created_once_at_startup_and_usable_directly(iris_clf: svm.SVC) -> None:
    created: list[int] = []

    @dosirak.service
    class Counter:
        def __init__(self) -> None:
            created.append(threading.get_ident())

        @dosirak.api
        def add(self, values: list[int]) -> int:
            return sum(values)

    assert Counter.name == "counter" and created == []
    assert Counter().add([1, 2]) == 3  # the class works in a notebook too
    with serve(Counter) as url:
        assert [httpx.post(f"{url}/add", json=[1, i]).json() for i in range(3)] == [1, 2, 3]
    assert len(created) == 2


def test_batchable_method_receives_merged_batches() -> None:
    batch_sizes: list[int] = []

    @dosirak.service(name="batched")
    class Doubler:
        @dosirak.api(batchable=True, max_batch_size=16, max_latency_ms=200)
        def double(self, x: Annotated[np.ndarray, Shape((-1, 2)), DType("float64")]
                   ) -> np.ndarray:
            batch_sizes.append(len(x))
            time.sleep(0.05)  # while one batch runs, the other requests queue up and merge
            return x * 2

    async def fire(url: str) -> list[Any]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            responses = await asyncio.gather(*(
                client.post("/double", json=[[i, i]]) for i in range(12)))
        return [r.json() for r in responses]

    with serve(Doubler) as url:
        results = asyncio.run(fire(url))
        bad = httpx.post(f"{url}/double", json=[[1, 2, 3]])
    assert results == [[[2 * i, 2 * i]] for i in range(12)]
    assert sum(batch_sizes) == 12 and max(batch_sizes) > 1, batch_sizes
    assert bad.status_code == 400 and bad.json()["detail"][0]["loc"] == ["body", "axis 1"]


class Flower(pydantic.BaseModel):
    length: float
    width: float


def test_several_parameters_become_a_multipart_input() -> None:
    @dosirak.service(name="multi")
    class Multi:
        @dosirak.api(route="/v1/score")
        async def score(self, flower: Flower, weights: np.ndarray, label: str = "none"
                        ) -> dict[str, Any]:
            return {"score": float(weights.sum() * flower.length), "label": label}

    api = Multi.apis["score"]
    assert isinstance(api.input, Multipart) and api.input.optional == {"label"}
    with serve(Multi) as url:
        full = httpx.post(f"{url}/v1/score", json={"flower": {"length": 2, "width": 1},
                                                   "weights": [1, 2], "label": "x"})
        short = httpx.post(f"{url}/v1/score", json={"flower": {"length": 2, "width": 1},
                                                    "weights": [1, 2]})
        missing = httpx.post(f"{url}/v1/score", json={"weights": [1]})
    assert full.json() == {"score": 6.0, "label": "x"}
    assert short.json() == {"score": 6.0, "label": "none"}
    assert missing.status_code == 400 and missing.json()["detail"][0]["loc"] == ["flower"]


def test_annotations_map_to_descriptors() -> None:
    assert descriptor_for(np.ndarray) == NumpyNdarray()
    assert descriptor_for(Annotated[np.ndarray, Shape((None, 4)), DType("float32")]) == \
        NumpyNdarray(dtype="float32", shape=(-1, 4), enforce_dtype=True, enforce_shape=True)
    assert descriptor_for(np.ndarray[Any, np.dtype[np.int8]]) == \
        NumpyNdarray(dtype="int8", enforce_dtype=True)
    assert descriptor_for(pd.DataFrame) == PandasDataFrame()
    assert descriptor_for(pd.Series) == PandasSeries()
    assert descriptor_for(Flower) == JSON(pydantic_model=Flower)
    assert descriptor_for(str) == Text()
    assert descriptor_for(PILImage.Image) == Image()
    assert descriptor_for(pathlib.Path) == File(kind="path")
    assert descriptor_for(pathlib.Path, output=True) == File()
    assert descriptor_for(int).to_spec()["schema"] == {"type": "integer"}
    assert descriptor_for(list[float]).to_spec()["schema"] == {"type": "array",
                                                              "items": {"type": "number"}}


def test_declaration_errors_say_how_to_fix() -> None:
    with pytest.raises(InvalidArgument, match=r"has no @dosirak\.api methods"):
        dosirak.service(type("Empty", (), {}))
    with pytest.raises(InvalidArgument, match="max_batch_size must be"):
        dosirak.api(batchable=True, max_batch_size=0)
    with pytest.raises(InvalidArgument, match="batch_dim"):
        dosirak.api(batch_dim="rows")  # type: ignore[arg-type]

    class Opaque:
        pass

    with pytest.raises(InvalidArgument, match="no IO descriptor fits"):
        @dosirak.service
        class Bad:
            @dosirak.api
            def run(self, thing: Opaque) -> None: ...
