"""Values that crashed models (issue 10, items 3 and 4): malformed .npy headers, NaN and
infinities, nulls; each refused with a 400 over real HTTP, and the schema says so."""

from __future__ import annotations

import ast
import io
import struct
from collections.abc import Iterator

import httpx
import numpy as np
import pandas as pd
import pydantic
import pytest

import dosirak
from dosirak.io import JSON, NumpyNdarray, PandasDataFrame
from live_server import serve

NPY = "application/x-npy"


class Features(pydantic.BaseModel):
    """Two float features."""

    width: float
    height: float


def npy_with_header(header: str, data: bytes = b"") -> bytes:
    """A .npy 1.0 body whose header is ``header`` as written (not checked by numpy)."""
    text = header.encode("latin-1")
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    svc = dosirak.Service("nonfinite")

    def check_finite(value: np.ndarray) -> list[int]:
        # Stands in for a model that fails on non-finite input (scikit-learn does).
        assert np.isfinite(np.asarray(value, dtype=float)).all()
        return list(np.shape(value))

    svc.api(input=NumpyNdarray(dtype="float32", shape=(-1, 2), enforce_dtype=True,
                               enforce_shape=True), output=JSON(), name="array")(check_finite)
    svc.api(input=NumpyNdarray(), output=JSON(), name="any_array")(lambda x: list(x.shape))
    svc.api(input=NumpyNdarray(dtype="float64", enforce_dtype=True, allow_nonfinite=True),
            output=JSON(), name="nan_allowed")(lambda x: int(np.isnan(x).sum()))

    @svc.api(input=JSON(pydantic_model=Features), output=JSON())
    def features(value: Features) -> float:
        assert np.isfinite([value.width, value.height]).all()
        return value.width * value.height

    @svc.api(input=PandasDataFrame(columns=["a", "b"], dtype="float64", enforce_dtype=True),
             output=JSON())
    def frame(df: pd.DataFrame) -> list[int]:
        return check_finite(df.to_numpy())

    with serve(svc) as address:
        yield address


def refused(response: httpx.Response, kind: str, *words: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert kind in {item["type"] for item in body["detail"]}, body
    for word in words:
        assert word in body["error"], body["error"]


@pytest.mark.parametrize(("header", "words"), [
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
     ["73786976294838206464 bytes"]),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 2), }", ["negative size"]),
    ("{'descr': '|V0', 'fortran_order': False, 'shape': (3,), }", ["no bytes per item"]),
    ("{'descr': x, 'fortran_order': False, 'shape': (3,), }", ["malformed"]),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (3,}", ["malformed"]),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': " + "(" * 200 + ")" * 200 + ", }",
     ["malformed"]),
    ("{'descr': 'zz', 'fortran_order': False, 'shape': (3,), }", ["malformed"]),
])
def test_malformed_npy_headers_are_400(url: str, header: str, words: list[str]) -> None:
    for route in ("/array", "/any_array"):
        response = httpx.post(f"{url}{route}", content=npy_with_header(header),
                              headers={"content-type": NPY})
        refused(response, "npy_invalid", *words)


def test_npy_header_helper_writes_what_numpy_reads() -> None:
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }"
    array = np.lib.format.read_array(io.BytesIO(npy_with_header(header, b"\0" * 8)))
    assert array.shape == (1, 2) and ast.literal_eval(header)["descr"] == "<f4"


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nonfinite_npy_values_are_refused_where_the_dtype_is_enforced(url: str,
                                                                      value: float) -> None:
    body = npy(np.array([[1.0, 2.0], [3.0, value]], dtype=np.float32))
    response = httpx.post(f"{url}/array", content=body, headers={"content-type": NPY})
    refused(response, "finite_number", "[1][1]", "allow_nonfinite")
    assert response.json()["detail"][0]["loc"] == ["body", 1, 1]


def test_json_number_past_float32_is_refused_and_the_schema_bounds_it(url: str) -> None:
    refused(httpx.post(f"{url}/array", json=[[1.0, 1e39]]), "finite_number", "[0][1]")
    assert httpx.post(f"{url}/array", json=[[1.0, 3e38]]).json() == [1, 2]
    document = httpx.get(f"{url}/docs.json").json()
    request = document["paths"]["/array"]["post"]["requestBody"]["content"]
    item = request["application/json"]["schema"]["items"]["items"]
    assert "nullable" not in item and item["maximum"] == float(np.finfo(np.float32).max)


def test_allow_nonfinite_lets_nan_through(url: str) -> None:
    body = npy(np.array([np.nan, 1.0, np.nan]))
    response = httpx.post(f"{url}/nan_allowed", content=body, headers={"content-type": NPY})
    assert response.json() == 2


@pytest.mark.parametrize("body", [b'{"width": NaN, "height": 1}',
                                  b'{"width": Infinity, "height": 1}',
                                  b'{"width": 1e999, "height": 1}'])
def test_pydantic_floats_refuse_nan_and_infinity(url: str, body: bytes) -> None:
    response = httpx.post(f"{url}/features", content=body,
                          headers={"content-type": "application/json"})
    refused(response, "json_invalid", "malformed JSON")
    assert httpx.post(f"{url}/features", json={"width": 2, "height": 3}).json() == 6


@pytest.mark.parametrize(("body", "content_type"), [
    (b'[{"a": null, "b": 1}]', "application/json"),
    (b'[{"a": 1, "b": 2}, {"b": 3}]', "application/json"),
    (b"a,b\nnan,1\n", "text/csv"),
    (b"a,b\n1,\n", "text/csv"),
    (b"a,b\ninf,1\n", "text/csv"),
])
def test_dataframe_nulls_and_nan_are_refused_in_enforced_float_columns(
        url: str, body: bytes, content_type: str) -> None:
    response = httpx.post(f"{url}/frame", content=body, headers={"content-type": content_type})
    refused(response, "finite_number", "allow_nonfinite")
    assert response.json()["detail"][0]["loc"][0] == "body"


def test_schemas_stop_advertising_null_where_it_is_refused(url: str) -> None:
    paths = httpx.get(f"{url}/docs.json").json()["paths"]
    frame = paths["/frame"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert frame["items"]["properties"]["a"] == {"type": "number"}
    # Responses may still hold NaN, written as null.
    response = paths["/any_array"]["post"]["responses"]["200"]["content"]
    assert "application/json" in response
