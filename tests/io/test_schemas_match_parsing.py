"""Each descriptor's request schema says what its parse accepts (found by schemathesis
``--checks all``): bodies the schema allows are accepted, bodies it forbids are refused."""

from __future__ import annotations

from typing import Any

import jsonschema
import numpy as np
import pytest

from dosirak.exceptions import BadInput
from dosirak.io import JSON, Image, Multipart, NumpyNdarray, PandasSeries
from dosirak.io.base import IODescriptor


def request_schema(descriptor: IODescriptor, media_type: str = "application/json") -> Any:
    return descriptor.openapi_request_body()["content"][media_type]["schema"]


def accepts(descriptor: IODescriptor, value: Any) -> bool:
    try:
        descriptor.from_json_value(value)
    except BadInput:
        return False
    return True


def valid(schema: Any, value: Any) -> bool:
    return jsonschema.Draft4Validator(schema).is_valid(value)


@pytest.mark.parametrize("value", [[False], [1.0, True], ["1.5"], {"a": "x"}])
def test_enforced_numeric_series_refuses_booleans_and_text(value: Any) -> None:
    series = PandasSeries(dtype="float64", enforce_dtype=True)
    assert not valid(request_schema(series), value)
    assert not accepts(series, value)  # [false] was read as 0.0


@pytest.mark.parametrize("value", [[1.5, 2], [], {"x": 1.0}, [3]])
def test_enforced_numeric_series_takes_what_its_schema_allows(value: Any) -> None:
    series = PandasSeries(dtype="float64", enforce_dtype=True)
    assert valid(request_schema(series), value) and accepts(series, value)


def test_sampled_array_schema_states_the_dtype_and_the_form() -> None:
    doubler = NumpyNdarray.from_sample(np.array([[1, 2, 3]], dtype=np.int64), enforce_dtype=True)
    schema = request_schema(doubler)
    assert not valid(schema, [{}])  # was schema-valid (items: {}), and refused
    assert not valid(schema, [[1.5, 2, 3]])
    for value in ([[1, 2, 3]], [[1, 2, 3], [4, 5, 6]], []):
        assert valid(schema, value) and accepts(doubler, value)
    flat = NumpyNdarray(dtype="int64", enforce_dtype=True)
    assert not valid(request_schema(flat), [{}]) and not valid(request_schema(flat), [[1], [2, 3]])
    assert valid(request_schema(flat), [1, 2]) and accepts(flat, [1, 2])


def test_multipart_form_schema_forbids_unknown_parts() -> None:
    form = Multipart(rows=NumpyNdarray(), note=JSON())
    schema = request_schema(form, "multipart/form-data")
    assert schema["required"] == ["rows", "note"]
    assert schema["additionalProperties"] is False  # unknown parts are refused


def test_image_schemas_say_what_an_upload_and_b64_object_hold() -> None:
    image = Image()
    body = image.openapi_request_body()["content"]
    assert body["multipart/form-data"]["encoding"] == {
        "image": {"contentType": "image/*, application/octet-stream"}}
    b64 = body["application/json"]["schema"]
    assert not valid(b64, {"b64": "", "extra": 1})  # refused by the server: not base64 text
    assert not valid(b64, {"instances": [{"b64": "", "extra": 1}]})
    assert valid(b64, {"instances": [{"b64": ""}]})


def test_series_answers_keep_every_digit() -> None:
    # pandas' to_json kept 10 digits: the largest double was written past the double range.
    body, _ = PandasSeries(dtype="float64").render(np.array([-1.7976931348623157e308, 0.1 + 0.2,
                                                             np.nan]), "application/json")
    assert body == b"[-1.7976931348623157e+308,0.30000000000000004,null]"
