"""JSON over real HTTP: pydantic models and typed values validated, any value written."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pydantic
import pytest

import dosirak
from dosirak.exceptions import BadInput, InvalidArgument
from dosirak.io import JSON, Json
from live_server import serve


class Flower(pydantic.BaseModel):
    sepal_length: float
    sepal_width: float = pydantic.Field(gt=0)
    species: str | None = None


@dataclasses.dataclass
class Point:
    x: int
    y: int


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    svc = dosirak.Service("json_io")

    @svc.api(input=JSON(pydantic_model=Flower), output=JSON())
    def area(flower: Flower) -> dict[str, Any]:
        assert isinstance(flower, Flower)
        return {"area": flower.sepal_length * flower.sepal_width, "flower": flower}

    @svc.api(input=JSON(pydantic_model=list[float]), output=JSON())
    def total(values: list[float]) -> float:
        return sum(values)

    @svc.api(input=JSON(), output=JSON())
    def anything(value: Any) -> Any:
        return value

    @svc.api(input=JSON(), output=JSON())
    def numpy_things(value: Any) -> Any:
        return {"array": np.arange(3), "scalar": np.float32(0.5), "nan": float("nan"),
                "frame": pd.DataFrame({"a": [1, 2]}), "point": Point(1, 2),
                "inf": np.array([np.inf])}

    @svc.api(input=JSON(), output=JSON(pydantic_model=Flower))
    def make_flower(value: Any) -> Flower:
        return Flower(sepal_length=1, sepal_width=2, species="setosa")

    @svc.api(input=JSON(), output=JSON())
    def unencodable(value: Any) -> Any:
        return {"raw": b"bytes"}

    with serve(svc) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http


def test_pydantic_model_input(client: httpx.Client) -> None:
    response = client.post("/area", json={"sepal_length": 2, "sepal_width": 3})
    assert response.status_code == 200
    assert response.json() == {"area": 6.0, "flower": {"sepal_length": 2.0, "sepal_width": 3.0,
                                                       "species": None}}


def test_failed_validation_names_every_field(client: httpx.Client) -> None:
    response = client.post("/area", json={"sepal_width": -1})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "2 validation error(s): sepal_length, sepal_width"
    locations = {tuple(item["loc"]): item["type"] for item in body["detail"]}
    assert locations == {("body", "sepal_length"): "missing",
                         ("body", "sepal_width"): "greater_than"}


def test_malformed_json_is_400_for_validated_and_plain_bodies(client: httpx.Client) -> None:
    for route in ("/area", "/anything"):
        response = client.post(route, content=b'{"sepal_length": ',
                               headers={"content-type": "application/json"})
        assert response.status_code == 400
        assert response.json()["error"].startswith("malformed JSON")
        assert response.json()["detail"][0]["type"] == "json_invalid"


def test_typed_values_are_validated(client: httpx.Client) -> None:
    assert client.post("/total", json=[1, 2.5]).json() == 3.5
    response = client.post("/total", json=[1, "two"])
    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"] == ["body", 1]


def test_any_json_round_trips(client: httpx.Client) -> None:
    value = {"nested": [1, 2.5, None, True, "ü"], "empty": {}}
    assert client.post("/anything", json=value).json() == value


def test_model_outputs_numpy_pandas_and_non_finite_numbers(client: httpx.Client) -> None:
    response = client.post("/numpy_things", json={})
    assert response.status_code == 200
    assert response.json() == {"array": [0, 1, 2], "scalar": 0.5, "nan": None,
                               "frame": [{"a": 1}, {"a": 2}], "point": {"x": 1, "y": 2},
                               "inf": [None]}
    assert b"NaN" not in response.content


def test_pydantic_output(client: httpx.Client) -> None:
    response = client.post("/make_flower", json={})
    assert response.json() == {"sepal_length": 1.0, "sepal_width": 2.0, "species": "setosa"}


def test_unencodable_output_is_500_without_detail(client: httpx.Client) -> None:
    response = client.post("/unencodable", json={})
    assert response.status_code == 500
    assert "bytes" not in response.json()["error"]


def test_schema_and_components_come_from_the_model() -> None:
    descriptor = JSON(pydantic_model=Flower)
    assert descriptor.schema() == {"$ref": "#/components/schemas/Flower"}
    assert set(descriptor.components()["Flower"]["properties"]) == {
        "sepal_length", "sepal_width", "species"}
    assert Json is JSON  # the seeds' spelling


def test_from_sample_uses_the_instance() -> None:
    descriptor = JSON.from_sample(Flower(sepal_length=1, sepal_width=2))
    assert descriptor.pydantic_model is Flower
    assert descriptor.example() == {"sepal_length": 1.0, "sepal_width": 2.0, "species": None}
    assert JSON.from_sample({"a": 1}).example() == {"a": 1}


def test_from_json_value_validates() -> None:
    with pytest.raises(BadInput, match="sepal_length"):
        JSON(pydantic_model=Flower).from_json_value({"sepal_width": 1})


def test_unvalidatable_types_are_refused() -> None:
    class NotPydantic:
        pass

    with pytest.raises(InvalidArgument, match="pydantic cannot validate"):
        JSON(pydantic_model=NotPydantic)
