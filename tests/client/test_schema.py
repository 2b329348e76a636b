"""Reading a service's APIs from its OpenAPI document."""

from __future__ import annotations

import pytest

from dosirak.client.schema import apis_from_openapi
from dosirak.exceptions import InvalidArgument
from dosirak.server.openapi import build_openapi
from server.example_services import json_service, multipart_service, numpy_service


def test_apis_by_name_with_routes_and_types() -> None:
    apis = apis_from_openapi(build_openapi(numpy_service()))
    assert sorted(apis) == ["double", "row_sums"]  # /livez, /readyz ... are not APIs
    double = apis["double"]
    assert double.route == "/v2/models/doubler/infer"
    assert list(double.request) == ["application/json", "application/x-npy"]
    assert double.response == ("application/json", "application/x-npy")
    assert double.description == "Double every value."
    assert not double.takes_fields
    assert repr(double) == ("RemoteAPI(name='double', route='/v2/models/doubler/infer', "
                            "request=['application/json', 'application/x-npy'], "
                            "response=['application/json', 'application/x-npy'])")


def test_references_are_followed() -> None:
    apis = apis_from_openapi(build_openapi(json_service()))
    schema = apis["sepal_area"].request["application/json"]
    assert schema["title"] == "Flower" and "sepal_length" in schema["properties"]


def test_multipart_fields() -> None:
    scaled = apis_from_openapi(build_openapi(multipart_service()))["scaled"]
    assert scaled.fields == {"rows": "application/json", "flower": "application/json"}
    assert scaled.field_schemas["flower"]["title"] == "Flower"
    assert "keyword arguments rows, flower" in scaled.summary()


def test_not_an_openapi_document() -> None:
    with pytest.raises(InvalidArgument, match="not an OpenAPI document"):
        apis_from_openapi({"hello": "world"})
