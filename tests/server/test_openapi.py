"""The OpenAPI document and the Swagger UI page, fetched from a running server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pydantic
import pytest
from openapi_spec_validator import validate

import dosirak
from dosirak.io import (
    JSON,
    File,
    Image,
    Multipart,
    NumpyNdarray,
    PandasDataFrame,
    PandasSeries,
    Text,
)
from dosirak.server.openapi import schema_30
from live_server import serve


class Features(pydantic.BaseModel):
    """Measurements of one flower."""

    sepal_length: float = pydantic.Field(gt=0)
    species: str | None = None
    tags: tuple[int, str] = (1, "a")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, dict[str, Any]]]:
    svc = dosirak.Service("documented")

    @svc.api(input=NumpyNdarray.from_sample(np.array([[5.9, 3.0, 5.1, 1.8]]),
                                            enforce_shape=True),
             output=NumpyNdarray(dtype="int64"))
    def classify(x: np.ndarray) -> np.ndarray:
        """Classify irises.

        Send rows of four measurements.
        """
        return np.zeros(len(x), dtype=np.int64)

    @svc.api(input=JSON(pydantic_model=Features), output=JSON(), route="/v1/features")
    def features(value: Features) -> dict[str, Any]:
        return value.model_dump()

    @svc.api(input=PandasDataFrame.from_sample(pd.DataFrame({"a": [1.0], "b": ["x"]})),
             output=PandasSeries())
    def table(df: pd.DataFrame) -> pd.Series:
        return df["a"]

    @svc.api(input=Multipart(image=Image(), meta=JSON(pydantic_model=Features), note=Text()),
             output=File())
    def upload(image: Any, meta: Features, note: str) -> bytes:
        return b""

    with serve(svc) as url:
        yield url, httpx.get(f"{url}/docs.json").json()


def test_document_is_valid_openapi_3(served: tuple[str, dict[str, Any]]) -> None:
    _, document = served
    assert document["openapi"] == "3.0.3"
    validate(document)
    assert document["info"]["title"] == "documented"


def test_one_post_operation_per_api_with_every_error_status(
        served: tuple[str, dict[str, Any]]) -> None:
    _, document = served
    apis = {path for path, item in document["paths"].items() if "post" in item}
    assert apis == {"/classify", "/v1/features", "/table", "/upload"}
    for path in apis:
        responses = document["paths"][path]["post"]["responses"]
        assert set(responses) == {"200", "400", "413", "415", "500", "503"}
    assert {"/livez", "/readyz", "/healthz"} <= set(document["paths"])


def test_descriptions_and_examples(served: tuple[str, dict[str, Any]]) -> None:
    _, document = served
    operation = document["paths"]["/classify"]["post"]
    assert operation["summary"] == "Classify irises."
    assert operation["description"] == "Classify irises.\n\nSend rows of four measurements."
    request = operation["requestBody"]["content"]
    assert set(request) == {"application/json", "application/x-npy"}
    assert request["application/json"]["example"] == [[5.9, 3.0, 5.1, 1.8]]
    assert request["application/json"]["schema"]["items"]["maxItems"] == 4
    # The output's dtype is not enforced, so its schema promises nothing about it.
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "anyOf": [{"type": "array", "items": {}}, {"type": "number"}, {"type": "string"},
                  {"type": "boolean"}]}
    table = document["paths"]["/table"]["post"]["requestBody"]["content"]
    assert table["application/json"]["example"] == [{"a": 1.0, "b": "x"}]
    assert {"text/csv", "application/vnd.apache.parquet"} <= set(table)


def test_pydantic_models_are_components_in_openapi_30_form(
        served: tuple[str, dict[str, Any]]) -> None:
    _, document = served
    features = document["components"]["schemas"]["Features"]
    assert features["description"] == "Measurements of one flower."
    assert features["properties"]["species"] == {"type": "string", "nullable": True,
                                                 "default": None, "title": "Species"}
    assert features["properties"]["tags"]["maxItems"] == 2
    assert features["properties"]["sepal_length"] == {"type": "number", "minimum": 0,
                                                      "exclusiveMinimum": True,
                                                      "title": "Sepal Length"}
    body = document["paths"]["/v1/features"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/Features"}


def test_multipart_form_fields_and_encodings(served: tuple[str, dict[str, Any]]) -> None:
    _, document = served
    content = document["paths"]["/upload"]["post"]["requestBody"]["content"]
    form = content["multipart/form-data"]
    assert form["schema"]["properties"]["image"] == {"type": "string", "format": "binary"}
    assert form["schema"]["required"] == ["image", "meta", "note"]
    assert form["encoding"]["meta"] == {"contentType": "application/json"}
    assert form["encoding"]["note"] == {"contentType": "text/plain"}
    assert content["application/json"]["schema"]["properties"]["image"]["format"] == "byte"


def test_schema_30_leaves_examples_and_field_names_alone() -> None:
    schema = {"type": "object", "properties": {"const": {"type": ["string", "null"]},
                                               "anyOf": {"const": 3}},
              "example": {"const": 1, "type": ["a", "b"]}}
    assert schema_30(schema) == {
        "type": "object",
        "properties": {"const": {"type": "string", "nullable": True},
                       "anyOf": {"enum": [3]}},
        "example": {"const": 1, "type": ["a", "b"]}}


def test_swagger_ui_page_is_served_offline(served: tuple[str, dict[str, Any]]) -> None:
    url, _ = served
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css",
                  "favicon-32x32.png"):
        response = httpx.get(f"{url}/static/swagger-ui/{asset}")
        assert response.status_code == 200 and len(response.content) > 500, asset
    init = httpx.get(f"{url}/static/swagger-init.js").text
    assert 'url: "./docs.json"' in init and "validatorUrl: null" in init
    # Only the files the page needs are served; the bundle's petstore initializer is not.
    assert httpx.get(f"{url}/static/swagger-ui/swagger-initializer.js").status_code == 404
    assert httpx.get(f"{url}/static/swagger-ui/..%2F..%2F__init__.py").status_code == 404
