"""The real tritonclient[http] against real `dosirak serve` processes: the iris service (a
scikit-learn model behind a batching runner), a pandas and a text service, with the client's
defaults (binary tensors both ways), in JSON mode and with gzip/deflate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from live_server import Served

EXAMPLES_DIR = Path(__file__).resolve().parents[1]
TARGET = """
import sys
sys.path.insert(0, {directory!r})
from example_services import EXAMPLES
svc = EXAMPLES[{name!r}]()
"""
ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[object]:
    started: list[Served] = []

    def start(name: str, *args: str) -> tuple[Served, triton.InferenceServerClient]:
        target = tmp_path / f"{name}_target.py"
        target.write_text(TARGET.format(directory=str(EXAMPLES_DIR), name=name))
        server = Served([f"{target}:svc", *args], cwd=tmp_path)
        started.append(server)
        return server, triton.InferenceServerClient(server.url.removeprefix("http://"))

    yield start
    for server in started:
        server.stop()


def test_iris_with_the_clients_defaults_json_mode_and_compression(served: object) -> None:
    server, client = served("iris")  # type: ignore[operator]
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("classify")
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    assert client.get_model_metadata("classify")["inputs"] == [
        {"name": "rows", "datatype": "FP64", "shape": [-1, 4]}]
    status, _, own = server.post("/classify", ROWS.tolist())
    assert status == 200

    rows = triton.InferInput("rows", list(ROWS.shape), "FP64")
    rows.set_data_from_numpy(ROWS)  # binary by default, and binary outputs asked for
    result = client.infer("classify", [rows], request_id="abc")
    assert result.get_response()["id"] == "abc"
    assert "binary_data_size" in result.get_response()["outputs"][0]["parameters"]
    assert result.as_numpy("output").tolist() == own

    rows.set_data_from_numpy(ROWS, binary_data=False)
    result = client.infer("classify", [rows], model_version="1",
                          outputs=[triton.InferRequestedOutput("output", binary_data=False)])
    assert result.get_response()["outputs"][0]["data"] == own

    narrow = triton.InferInput("rows", list(ROWS.shape), "FP32")
    narrow.set_data_from_numpy(ROWS.astype(np.float32))  # converted as the API's route does
    for algorithm in ("gzip", "deflate"):
        result = client.infer("classify", [narrow], request_compression_algorithm=algorithm,
                              response_compression_algorithm=algorithm)
        assert result.as_numpy("output").tolist() == own

    wrong = triton.InferInput("rows", [1, 3], "FP64")
    wrong.set_data_from_numpy(np.ones((1, 3)))
    with pytest.raises(InferenceServerException, match=r"expected shape \(any, 4\)"):
        client.infer("classify", [wrong])
    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        client.infer("nope", [rows])
    # one access line per call, the OIP route named as it is
    server.wait_for(r"method=POST path=/v2/models/classify/versions/1/infer status=200")


def test_pandas_service_one_tensor_per_column(served: object) -> None:
    server, client = served("pandas")  # type: ignore[operator]
    inputs = []
    for name, values in (("a", [1.0, 2.0]), ("b", [10.0, 20.0])):
        column = triton.InferInput(name, [2], "FP64")
        column.set_data_from_numpy(np.array(values))
        inputs.append(column)
    result = client.infer("add_columns", inputs)
    _, _, own = server.post("/add_columns", [{"a": 1.0, "b": 10.0}, {"a": 2.0, "b": 20.0}])
    assert result.as_numpy("output").tolist() == own == [11.0, 22.0]
    series = triton.InferInput("series", [3], "FP64")
    series.set_data_from_numpy(np.array([1.0, 2.0, 6.0]), binary_data=False)
    result = client.infer("describe", [series])
    assert result.as_numpy("count").tolist() == [3] and result.as_numpy("mean").tolist() == [3.0]


def test_text_and_json_services_through_bytes_tensors(served: object) -> None:
    server, client = served("json")  # type: ignore[operator]
    text = triton.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array(["héllo"], dtype=object))
    result = client.infer("shout", [text])
    assert result.as_numpy("output").tolist() == ["HÉLLO".encode()]
    text.set_data_from_numpy(np.array(["héllo"], dtype=object), binary_data=False)
    result = client.infer("shout", [text], request_compression_algorithm="gzip",
                          outputs=[triton.InferRequestedOutput("output", binary_data=False)])
    assert result.as_numpy("output").tolist() == ["HÉLLO"]
    flower = triton.InferInput("flower", [1], "BYTES")
    flower.set_data_from_numpy(np.array([json.dumps({"sepal_length": 2, "sepal_width": 3})],
                                        dtype=object))
    result = client.infer("sepal_area", [flower])
    _, _, own = server.post("/sepal_area", {"sepal_length": 2, "sepal_width": 3})
    assert json.loads(result.as_numpy("output")[0]) == own == {"area": 6.0, "name": None}
    flower.set_data_from_numpy(np.array([json.dumps({"sepal_length": -1, "sepal_width": 3})],
                                        dtype=object))
    with pytest.raises(InferenceServerException, match="sepal_length"):
        client.infer("sepal_area", [flower])
