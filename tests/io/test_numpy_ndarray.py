"""NumpyNdarray: JSON and .npy bodies both ways over real HTTP, validation, and no pickle."""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

import dosirak
from dosirak.exceptions import BadInput, InvalidArgument
from dosirak.io import NumpyNdarray
from dosirak.io.numpy import dump_npy, load_npy
from live_server import serve

NPY = "application/x-npy"


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    svc = dosirak.Service("numpy_io")

    @svc.api(input=NumpyNdarray(), output=NumpyNdarray())
    def echo(x: np.ndarray) -> np.ndarray:
        return x

    @svc.api(input=NumpyNdarray(dtype="float32", shape=(-1, 4), enforce_dtype=True,
                                enforce_shape=True),
             output=NumpyNdarray(dtype="float32"))
    def strict(x: np.ndarray) -> np.ndarray:
        assert x.dtype == np.float32 and x.flags.writeable
        x += 1  # API code may write to its input
        return x

    @svc.api(input=NumpyNdarray(dtype="int64"), output=NumpyNdarray())
    def lenient(x: np.ndarray) -> np.ndarray:
        return np.asarray([str(x.dtype)])

    @svc.api(input=NumpyNdarray(), output=NumpyNdarray(shape=(2,), enforce_shape=True))
    def bad_output(x: np.ndarray) -> np.ndarray:
        return np.zeros(3)

    with serve(svc) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http


def test_json_in_json_out(client: httpx.Client) -> None:
    response = client.post("/echo", json=[[1.5, 2.0], [3.0, 4.25]])
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == [[1.5, 2.0], [3.0, 4.25]]


@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.arange(6, dtype=np.int8).reshape(2, 3),
    np.array([True, False]),
    np.array(["setosa", "virginica"]),
    np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    np.array(3.5),
    np.zeros((0, 4), dtype=np.uint16),
])
def test_npy_in_npy_out_keeps_dtype_and_shape(client: httpx.Client, array: np.ndarray) -> None:
    response = client.post("/echo", content=npy_bytes(array),
                           headers={"content-type": NPY, "accept": NPY})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == NPY
    back = np.load(io.BytesIO(response.content), allow_pickle=False)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_formats_cross_over(client: httpx.Client) -> None:
    array = np.arange(8, dtype=np.int32).reshape(2, 4)
    as_json = client.post("/echo", content=npy_bytes(array), headers={"content-type": NPY})
    assert as_json.headers["content-type"] == "application/json"
    assert as_json.json() == array.tolist()
    as_npy = client.post("/echo", json=array.tolist(), headers={"accept": NPY})
    np.testing.assert_array_equal(np.load(io.BytesIO(as_npy.content)), array)


def test_accept_quality_values_choose_the_format(client: httpx.Client) -> None:
    accept = "application/json;q=0.5, application/x-npy;q=0.9"
    response = client.post("/echo", json=[1, 2], headers={"accept": accept})
    assert response.headers["content-type"] == NPY
    response = client.post("/echo", json=[1, 2], headers={"accept": "text/html, */*;q=0.1"})
    assert response.headers["content-type"] == "application/json"


def test_four_megabyte_array_as_npy_both_ways(client: httpx.Client) -> None:
    array = np.random.default_rng(0).standard_normal((512, 1024))  # 4 MiB of float64
    assert array.nbytes == 4 * 1024 * 1024
    response = client.post("/echo", content=npy_bytes(array),
                           headers={"content-type": NPY, "accept": NPY})
    assert response.status_code == 200
    assert len(response.content) == array.nbytes + 128
    np.testing.assert_array_equal(np.load(io.BytesIO(response.content)), array)


def test_curl_default_content_type_reads_as_json(client: httpx.Client) -> None:
    # curl -d sends application/x-www-form-urlencoded unless told otherwise.
    response = client.post("/echo", content=b"[[1, 2]]",
                           headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200 and response.json() == [[1, 2]]


def test_enforced_dtype_and_shape(client: httpx.Client) -> None:
    ok = client.post("/strict", json=[[1, 2, 3, 4]])  # ints become float32 without loss
    assert ok.status_code == 200 and ok.json() == [[2.0, 3.0, 4.0, 5.0]]
    wrong_axis = client.post("/strict", json=[[1, 2, 3]])
    assert wrong_axis.status_code == 400
    body = wrong_axis.json()
    assert body["detail"][0]["loc"] == ["body", "axis 1"]
    assert "has 3 element(s), expected 4" in body["detail"][0]["msg"]
    assert "expected shape (any, 4), got (1, 3)" in body["error"]
    wrong_rank = client.post("/strict", json=[1, 2, 3, 4])
    assert wrong_rank.status_code == 400 and "2-dimensional" in wrong_rank.json()["error"]
    text = client.post("/strict", json=[["a", "b", "c", "d"]])
    assert text.status_code == 400
    assert text.json()["error"] == "expected an array of float32, got <U1"


def test_lenient_dtype_converts_when_it_can(client: httpx.Client) -> None:
    assert client.post("/lenient", json=[1.7, 2.2]).json() == ["int64"]
    assert client.post("/lenient", json=["x", "y"]).json() == ["<U1"]


def test_empty_batch_is_accepted(client: httpx.Client) -> None:
    response = client.post("/strict", json=[])
    assert response.status_code == 200 and response.json() == []


def test_ragged_and_mixed_arrays_are_400(client: httpx.Client) -> None:
    ragged = client.post("/echo", json=[[1, 2], [3]])
    assert ragged.status_code == 400
    assert "ragged" in ragged.json()["error"]
    assert "inhomogeneous" in ragged.json()["detail"][0]["msg"]
    mixed = client.post("/echo", json=[{"a": 1}])
    assert mixed.status_code == 400 and "nested lists of numbers" in mixed.json()["error"]


def test_output_that_breaks_its_descriptor_is_500(client: httpx.Client) -> None:
    response = client.post("/bad_output", json=[1])
    assert response.status_code == 500
    assert "does not fit its output" in response.json()["error"]
    assert response.json()["request_id"]


class _Bomb:
    """Unpickling this writes a file: if the file appears, the server unpickled request data."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (Path(self.path), "pwned"))


def test_object_npy_is_refused_without_unpickling(client: httpx.Client, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    array = np.empty(1, dtype=object)
    array[0] = _Bomb(str(marker))
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    assert pickle.PROTO in buffer.getvalue()  # the payload really is a pickle
    response = client.post("/echo", content=buffer.getvalue(), headers={"content-type": NPY})
    assert response.status_code == 400
    assert "never unpickles" in response.json()["error"]
    assert not marker.exists()


def test_truncated_and_foreign_npy_are_400(client: httpx.Client) -> None:
    data = npy_bytes(np.arange(100.0))
    truncated = client.post("/echo", content=data[:-8], headers={"content-type": NPY})
    assert truncated.status_code == 400 and "truncated" in truncated.json()["error"]
    foreign = client.post("/echo", content=b"PK\x03\x04 not npy", headers={"content-type": NPY})
    assert foreign.status_code == 400 and "not a .npy file" in foreign.json()["error"]


def test_npy_codec_round_trip_without_http() -> None:
    for array in (np.arange(24, dtype="<u2").reshape(2, 3, 4), np.array([], dtype=np.float16)):
        back = load_npy(dump_npy(array))
        assert back.dtype == array.dtype and back.shape == array.shape
        np.testing.assert_array_equal(back, array)
    writable = load_npy(bytearray(dump_npy(np.ones(3))))
    assert writable.flags.writeable


def test_seed_spelling_schema_and_validate() -> None:
    descriptor = NumpyNdarray(schema=np.dtype("int64"), validate=True)
    assert descriptor.dtype == np.dtype("int64") and descriptor.enforce_dtype
    with pytest.raises(BadInput, match="expected an array of int64"):
        descriptor.from_json_value([1.5])


def test_bad_options_are_refused_at_declaration() -> None:
    with pytest.raises(InvalidArgument, match="needs shape="):
        NumpyNdarray(enforce_shape=True)
    with pytest.raises(InvalidArgument, match="not a numpy dtype"):
        NumpyNdarray(dtype="floatish")
    with pytest.raises(InvalidArgument, match="shape must be"):
        NumpyNdarray(shape=(2, "x"))


def test_from_sample_sets_dtype_shape_and_example() -> None:
    sample = np.array([[5.9, 3.0, 5.1, 1.8]], dtype=np.float32)
    loose = NumpyNdarray.from_sample(sample)
    assert loose.to_spec()["dtype"] == "<f4" and loose.shape == (1, 4)
    # Nothing enforced, nothing promised: any nested lists, or one value.
    assert loose.schema() == {"anyOf": [{"type": "array", "items": {}}, {"type": "number"},
                                        {"type": "string"}, {"type": "boolean"}]}
    descriptor = NumpyNdarray.from_sample(sample, enforce_dtype=True, enforce_shape=True)
    assert descriptor.example() == [[5.900000095367432, 3.0, 5.099999904632568,
                                     1.7999999523162842]]
    schema = descriptor.schema()
    assert schema["minItems"] == 1 and schema["items"]["maxItems"] == 4
    # Enforced floats are finite and within float32's range; null (NaN) is refused.
    largest = float(np.finfo(np.float32).max)
    assert schema["items"]["items"] == {"type": "number", "format": "float",
                                        "minimum": -largest, "maximum": largest}
