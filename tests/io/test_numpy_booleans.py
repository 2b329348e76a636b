"""NumpyNdarray and JSON booleans: refused where numbers are enforced, kept where flags are."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest

import dosirak
from dosirak.exceptions import BadInput
from dosirak.io import NumpyNdarray
from live_server import serve

JSON_TYPE = "application/json"


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    svc = dosirak.Service("numpy_booleans")

    @svc.api(input=NumpyNdarray(dtype="float32", shape=(-1, 4), enforce_dtype=True,
                                enforce_shape=True), output=NumpyNdarray())
    def floats(x: np.ndarray) -> np.ndarray:
        return x.sum(axis=1)

    @svc.api(input=NumpyNdarray(dtype="int64", enforce_dtype=True), output=NumpyNdarray())
    def ints(x: np.ndarray) -> np.ndarray:
        return x.sum(axis=-1)

    @svc.api(input=NumpyNdarray(dtype="bool", enforce_dtype=True), output=NumpyNdarray())
    def flags(x: np.ndarray) -> np.ndarray:
        assert x.dtype == np.bool_
        return x.sum(axis=-1)

    with serve(svc) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http


@pytest.mark.parametrize(("route", "body", "loc"), [
    ("/floats", [[True, 1.0, 2.0, 3.0]], ["body", 0, 0]),
    ("/floats", [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, False, 8.0]], ["body", 1, 2]),
    ("/floats", [[True, False, True, False]], ["body", 0, 0]),  # all flags: still not numbers
    ("/ints", [[1, 2, 3], [4, True, 6]], ["body", 1, 1]),
    ("/ints", [False, 1], ["body", 0]),
    ("/ints", True, ["body"]),
])
def test_a_boolean_where_numbers_are_enforced_is_400(client: httpx.Client, route: str,
                                                     body: object, loc: list[object]) -> None:
    response = client.post(route, json=body)
    assert response.status_code == 400, response.text
    answer = response.json()
    message = answer["error"]
    dtype = "float32" if route == "/floats" else "int64"
    assert message.startswith(f"expected an array of {dtype}, got a boolean (true/false)")
    assert "where a number was expected" in message  # what
    assert "client bug" in message  # why
    assert "send the number (1 or 0), or declare dtype=bool" in message  # how to fix
    assert answer["detail"] == [{"loc": loc, "type": "dtype_error",
                                 "msg": f"boolean where a number ({dtype}) was expected"}]


def test_the_place_of_the_boolean_is_named(client: httpx.Client) -> None:
    response = client.post("/floats", json=[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, True, 8.0]])
    assert "got a boolean (true/false) at [1][2] where" in response.json()["error"]


def test_numbers_still_pass_where_numbers_are_enforced(client: httpx.Client) -> None:
    assert client.post("/floats", json=[[1.5, 2.0, 3.0, 4.0]]).json() == [10.5]
    assert client.post("/ints", json=[[1, 2, 3], [4, 5, 6]]).json() == [6, 15]
    # The letters t and f outside booleans (exponents are e/E) do not confuse the check.
    assert client.post("/floats", content=b"[[1e1, 2E0, -3.5e-1, 0.0]]",
                       headers={"content-type": JSON_TYPE}).json() == [pytest.approx(11.65)]
    text = client.post("/floats", json=[["true", "f", "t", "x"]])
    assert text.status_code == 400
    assert text.json()["error"] == "expected an array of float32, got <U4"


def test_booleans_are_the_values_of_a_bool_array(client: httpx.Client) -> None:
    response = client.post("/flags", json=[[True, False, True], [False, False, True]])
    assert response.status_code == 200 and response.json() == [2, 1]
    mixed = client.post("/flags", json=[[True, 1.0]])  # numbers in a bool array: refused as before
    assert mixed.status_code == 400
    assert mixed.json()["error"] == "expected an array of bool, got float64"


def test_without_a_dtype_the_array_is_what_numpy_makes_of_the_lists() -> None:
    free = NumpyNdarray()
    mixed = free.parse(b"[[true, 1.5], [2.0, false]]", JSON_TYPE, {})
    assert mixed.dtype == np.float64 and mixed.tolist() == [[1.0, 1.5], [2.0, 0.0]]
    flags = free.parse(b"[true, false]", JSON_TYPE, {})
    assert flags.dtype == np.bool_ and flags.tolist() == [True, False]


def test_a_declared_but_unenforced_dtype_converts_booleans_as_numpy_does() -> None:
    lenient = NumpyNdarray(dtype="float32")
    array = lenient.parse(b"[[true, 2.0], [3.0, false]]", JSON_TYPE, {})
    assert array.dtype == np.float32 and array.tolist() == [[1.0, 2.0], [3.0, 0.0]]


def test_already_decoded_values_are_checked_too() -> None:
    # Multipart JSON fields and offline rows arrive decoded, without a body to scan.
    strict = NumpyNdarray(dtype="float32", enforce_dtype=True)
    with pytest.raises(BadInput) as refused:
        strict.from_json_value([[1.0, 2.0], [3.0, True]])
    assert refused.value.detail[0]["loc"] == ["body", 1, 1]
    assert strict.from_json_value([[1.0, 2.0], [3.0, 4.0]]).dtype == np.float32
