"""The protocol's routes on a real server (uvicorn on 127.0.0.1), driven with raw HTTP: health,
metadata of every descriptor, infer in JSON and binary, compression, and every error answer."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import io
import json
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image as PILImage

import dosirak
from dosirak.config import load_config
from dosirak.io import NumpyNdarray
from dosirak.server.oip.binary import join_elements, split_elements
from live_server import serve

from ..example_services import EXAMPLES


class Client:
    """Raw HTTP/1.1 requests: exactly the headers given, nothing added (no Accept-Encoding)."""

    def __init__(self, url: str) -> None:
        self.port = urlsplit(url).port

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.putrequest(method, path, skip_accept_encoding=True)
            for key, value in (headers or {}).items():
                connection.putheader(key, value)
            if body is not None:
                connection.putheader("content-length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            return (response.status, {k.lower(): v for k, v in response.getheaders()},
                    response.read())
        finally:
            connection.close()

    def get(self, path: str) -> tuple[int, Any]:
        status, _, body = self.request("GET", path)
        return status, json.loads(body)

    def infer(self, model: str, document: Any, headers: dict[str, str] | None = None,
              raw: bytes | None = None) -> tuple[int, dict[str, str], Any]:
        body = raw if raw is not None else json.dumps(document).encode()
        status, answer_headers, data = self.request("POST", f"/v2/models/{model}/infer", body,
                                                    headers)
        if "inference-header-content-length" in answer_headers:
            return status, answer_headers, data
        return status, answer_headers, json.loads(data)


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Client]]:
    """numpy, pandas, json (with text), multipart, iris and image services, served at once."""
    with pytest.MonkeyPatch.context() as patch, contextlib.ExitStack() as stack:
        patch.setenv("DOSIRAK_HOME", str(tmp_path_factory.mktemp("home")))
        yield {name: Client(stack.enter_context(serve(EXAMPLES[name]())))
               for name in ("numpy", "pandas", "json", "multipart", "iris", "image")}


def tensor(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


# ----- health and metadata ------------------------------------------------------------------


def test_server_metadata_and_health(examples: dict[str, Client]) -> None:
    client = examples["iris"]
    assert client.get("/v2") == (200, {"name": "iris_example", "version": dosirak.__version__,
                                       "extensions": ["binary_tensor_data"]})
    assert client.get("/v2/health/live") == (200, {"live": True})
    assert client.get("/v2/health/ready") == (200, {"ready": True})
    assert client.get("/v2/models/classify/ready") == (200, {"name": "classify", "ready": True})
    assert client.get("/v2/models/classify/versions/1/ready")[0] == 200


def test_not_ready_is_503_until_the_service_starts() -> None:
    svc = EXAMPLES["numpy"]()
    with serve(svc, lifespan="off") as url:  # the service never starts
        client = Client(url)
        status, headers, body = client.request("GET", "/v2/health/ready")
        assert status == 503 and headers["retry-after"] == "1"
        assert json.loads(body) == {"error": "the server is not ready: the service is starting"}
        assert client.get("/v2/health/live")[0] == 200
        assert client.get("/v2/models/row_sums/ready")[0] == 503
        status, headers, answer = client.infer("row_sums", {"inputs": [
            tensor("rows", "FP64", [1, 4], [1, 2, 3, 4])]})
        assert status == 503 and headers["retry-after"] == "1"
        assert answer == {"error": "model 'row_sums' is not ready: the service is starting; "
                                   "retry shortly"}


def test_model_metadata_of_every_descriptor(examples: dict[str, Client]) -> None:
    def meta(service: str, model: str) -> tuple[list[Any], list[Any]]:
        status, document = examples[service].get(f"/v2/models/{model}")
        assert status == 200 and document["name"] == model and document["versions"] == ["1"]
        assert examples[service].get(f"/v2/models/{model}/versions/1") == (200, document)
        return document["inputs"], document["outputs"]

    # NumpyNdarray: one tensor named after the parameter, dtype and shape (-1 free)
    assert meta("numpy", "row_sums") == (
        [{"name": "rows", "datatype": "FP64", "shape": [-1, 4]}],
        [{"name": "output", "datatype": "FP64", "shape": [-1]}])
    assert meta("numpy", "double") == (
        [{"name": "values", "datatype": "INT64", "shape": [1, 3]}],
        [{"name": "output", "datatype": "FP64", "shape": [-1]}])  # no dtype: FP64
    # PandasDataFrame: one tensor per column; PandasSeries: one tensor
    assert meta("pandas", "add_columns") == (
        [{"name": "a", "datatype": "FP64", "shape": [-1]},
         {"name": "b", "datatype": "FP64", "shape": [-1]}],
        [{"name": "output", "datatype": "FP64", "shape": [-1]}])
    assert meta("pandas", "describe") == (
        [{"name": "series", "datatype": "FP64", "shape": [-1]}], [])  # columns not declared
    # JSON, Text, Image: BYTES of one element
    bytes_one = {"datatype": "BYTES", "shape": [1]}
    assert meta("json", "sepal_area") == ([{"name": "flower", **bytes_one}],
                                          [{"name": "output", **bytes_one}])
    assert meta("json", "shout") == ([{"name": "text", **bytes_one}],
                                     [{"name": "output", **bytes_one}])
    assert meta("image", "flip") == ([{"name": "image", **bytes_one}],
                                     [{"name": "output", **bytes_one}])
    # Multipart: one tensor per field
    assert meta("multipart", "scaled") == (
        [{"name": "rows", "datatype": "FP64", "shape": [-1, 2]}, {"name": "flower", **bytes_one}],
        [{"name": "output", **bytes_one}])


def test_file_descriptor_metadata_and_call() -> None:
    svc = dosirak.Service("files")

    @svc.api(input=dosirak.io.File(), output=dosirak.io.File(mime_type="application/pdf"))
    def reverse(upload: Any) -> bytes:
        return upload.read()[::-1]

    with serve(svc) as url:
        client = Client(url)
        assert client.get("/v2/models/reverse")[1]["inputs"] == [
            {"name": "upload", "datatype": "BYTES", "shape": [1]}]
        data = b"\x00\xffabc"
        header = json.dumps({"inputs": [{"name": "upload", "datatype": "BYTES", "shape": [1],
                                         "parameters": {"binary_data_size": len(data) + 4}}],
                             "parameters": {"binary_data_output": True}}).encode()
        status, headers, body = client.request(
            "POST", "/v2/models/reverse/infer", header + join_elements([data]),
            {"inference-header-content-length": str(len(header))})
        assert status == 200 and headers["content-type"] == "application/octet-stream"
        length = int(headers["inference-header-content-length"])
        output = json.loads(body[:length])["outputs"][0]
        assert output["parameters"]["content_type"] == "application/pdf"
        assert split_elements("output", memoryview(body[length:])) == [data[::-1]]


# ----- infer ---------------------------------------------------------------------------------


def test_oip_and_the_apis_own_route_give_the_same_answer(examples: dict[str, Client]) -> None:
    client = examples["iris"]
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
    _, _, own = client.request("POST", "/classify", json.dumps(rows).encode(),
                               {"content-type": "application/json"})
    status, headers, answer = client.infer("classify", {
        "id": "r1", "parameters": {"tenant": "t"},
        "inputs": [tensor("rows", "FP64", [3, 4], rows)]})
    assert status == 200 and headers["content-type"] == "application/json"
    assert "x-request-id" in headers
    assert answer == {"model_name": "classify", "model_version": "1", "id": "r1",
                      "parameters": {"tenant": "t"},
                      "outputs": [{"name": "output", "datatype": "INT64", "shape": [3],
                                   "data": json.loads(own)}]}
    assert json.loads(own) == [0, 2, 1]


def test_a_request_without_content_type_is_read_as_the_protocol_says(
        examples: dict[str, Client]) -> None:
    client = examples["iris"]
    rows = np.array([[5.1, 3.5, 1.4, 0.2]], dtype="<f4")
    header = json.dumps({"inputs": [{"name": "rows", "datatype": "FP32", "shape": [1, 4],
                                     "parameters": {"binary_data_size": 16}}],
                         "outputs": [{"name": "output",
                                      "parameters": {"binary_data": True}}]}).encode()
    status, headers, body = client.request(
        "POST", "/v2/models/classify/versions/1/infer", header + rows.tobytes(),
        {"inference-header-content-length": str(len(header))})  # and no Content-Type
    assert status == 200, body
    length = int(headers["inference-header-content-length"])
    output = json.loads(body[:length])["outputs"][0]
    assert output == {"name": "output", "datatype": "INT64", "shape": [1],
                      "parameters": {"binary_data_size": 8}}
    assert np.frombuffer(body[length:], "<i8").tolist() == [0]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_bodies_both_ways(examples: dict[str, Client], encoding: str) -> None:
    client = examples["numpy"]
    document = json.dumps({"inputs": [tensor("rows", "FP64", [2, 4], list(range(8)))]}).encode()
    body = gzip.compress(document) if encoding == "gzip" else zlib.compress(document)
    status, headers, data = client.request(
        "POST", "/v2/models/row_sums/infer", body,
        {"content-encoding": encoding, "accept-encoding": encoding})
    assert status == 200 and headers["content-encoding"] == encoding
    plain = gzip.decompress(data) if encoding == "gzip" else zlib.decompress(data)
    assert json.loads(plain)["outputs"][0]["data"] == [6.0, 22.0]


def test_text_json_multipart_pandas_and_image_models(examples: dict[str, Client]) -> None:
    status, _, answer = examples["json"].infer("shout", {"inputs": [
        tensor("text", "BYTES", [1], ["hello"])]})
    assert status == 200 and answer["outputs"][0]["data"] == ["HELLO"]
    status, _, answer = examples["json"].infer("sepal_area", {"inputs": [
        tensor("flower", "BYTES", [1], [json.dumps({"sepal_length": 2, "sepal_width": 3})])]})
    assert status == 200
    assert json.loads(answer["outputs"][0]["data"][0]) == {"area": 6.0, "name": None}
    status, _, answer = examples["multipart"].infer("scaled", {"inputs": [
        tensor("rows", "FP64", [1, 2], [1, 2]),
        tensor("flower", "BYTES", [1], [json.dumps({"sepal_length": 3, "sepal_width": 1})])]})
    assert status == 200
    assert json.loads(answer["outputs"][0]["data"][0]) == {"rows": [[3.0, 6.0]], "name": None}
    status, _, answer = examples["pandas"].infer("add_columns", {"inputs": [
        tensor("a", "FP64", [2], [1, 2]), tensor("b", "FP64", [2, 1], [[10], [20]])]})
    assert status == 200 and answer["outputs"][0]["data"] == [11.0, 22.0]
    status, _, answer = examples["pandas"].infer("describe", {"inputs": [
        tensor("series", "FP64", [3], [1, 2, 6])]})
    assert status == 200
    assert answer["outputs"] == [{"name": "count", "datatype": "INT64", "shape": [1],
                                  "data": [3]},
                                 {"name": "mean", "datatype": "FP64", "shape": [1],
                                  "data": [3.0]}]
    image = io.BytesIO()
    PILImage.new("L", (2, 3), color=200).save(image, format="PNG")
    png = image.getvalue()
    header = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                     "parameters": {"binary_data_size": len(png) + 4,
                                                    "content_type": "image/png"}}],
                         "parameters": {"binary_data_output": True}}).encode()
    status, headers, body = examples["image"].request(
        "POST", "/v2/models/flip/infer", header + join_elements([png]),
        {"inference-header-content-length": str(len(header))})
    assert status == 200, body
    length = int(headers["inference-header-content-length"])
    (flipped,) = split_elements("output", memoryview(body[length:]))
    assert PILImage.open(io.BytesIO(flipped)).size == (2, 3)


def test_dataframe_output_columns_without_names_are_output_n() -> None:
    import pandas as pd

    svc = dosirak.Service("frames")

    @svc.api(input=NumpyNdarray(), output=dosirak.io.PandasDataFrame())
    def table(x: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(x)

    with serve(svc) as url:
        status, _, answer = Client(url).infer("table", {"inputs": [
            tensor("x", "INT32", [2, 2], [1, 2, 3, 4])]})
    assert status == 200
    assert [(o["name"], o["data"]) for o in answer["outputs"]] == [("output_0", [1, 3]),
                                                                    ("output_1", [2, 4])]


def test_an_apis_own_route_under_v2_wins(examples: dict[str, Client]) -> None:
    # the numpy example's doubler API took /v2/models/doubler/infer as its own route
    status, _, body = examples["numpy"].request(
        "POST", "/v2/models/doubler/infer", b"[[1, 2, 3]]", {"content-type": "application/json"})
    assert status == 200 and json.loads(body) == [[2, 4, 6]]
    status, _, answer = examples["numpy"].infer("double", {"inputs": [
        tensor("values", "INT64", [1, 3], [1, 2, 3])]})
    assert status == 200 and answer["outputs"][0]["data"] == [2, 4, 6]


def test_oip_can_be_turned_off() -> None:
    config = load_config(environ={}, overrides={"api_server.oip.enabled": False})
    with serve(EXAMPLES["numpy"](), config=config) as url:
        client = Client(url)
        assert client.request("GET", "/v2")[0] == 404
        status, _, _ = client.infer("row_sums", {"inputs": []})
        assert status == 404


# ----- errors --------------------------------------------------------------------------------


def error(client: Client, model: str, document: Any = None, *, raw: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, str]:
    status, _, answer = client.infer(model, document, headers=headers, raw=raw)
    assert set(answer) == {"error"}, answer
    return status, answer["error"]


ROWS = tensor("rows", "FP64", [1, 4], [1, 2, 3, 4])


def test_bad_requests_are_400_with_a_precise_message(examples: dict[str, Client]) -> None:
    client = examples["numpy"]
    cases = [
        ({"inputs": [tensor("rows", "FP64", [1, 4], [1, 2, 3])]},
         "input 'rows': shape [1, 4] has 4 element(s) but its data has 3"),
        ({"inputs": [tensor("rows", "FP64", [1, 3], [1, 2, 3])]},
         "input 'rows': expected shape (any, 4), got (1, 3)"),
        ({"inputs": [tensor("nope", "FP64", [1, 4], [1, 2, 3, 4])]},
         "model 'row_sums' has no input 'nope'; its inputs are: rows"),
        ({"inputs": [ROWS, ROWS]}, "input 'rows' is given twice; send each tensor once"),
        ({"inputs": [tensor("rows", "INT8", [1, 4], [1, 2, 3, 999])]},
         "input 'rows': a value is out of the range of INT8 (-128 to 127)"),
        ({"inputs": [ROWS], "outputs": [{"name": "nope"}]},
         "model 'row_sums' has no output 'nope'; its outputs are: output"),
        ({"inputs": [tensor("rows", "BYTES", [1, 4], ["a", "b", "c", "d"])]},
         "input 'rows': expected an array of float64, got <U1"),
        ({"inputs": [tensor("rows", "BOOL", [1, 4], [True] * 4)]},
         "input 'rows': expected an array of float64, got booleans"),
        ({"nothing": 1}, "an inference request needs \"inputs\""),
    ]
    for document, message in cases:
        status, text = error(client, "row_sums", document)
        assert status == 400 and text.startswith(message), (message, text)
    status, text = error(client, "row_sums", raw=b"{not json")
    assert status == 400 and text.startswith("malformed JSON at line 1 column 2")
    header = json.dumps({"inputs": [{"name": "rows", "datatype": "FP64", "shape": [1, 4],
                                     "parameters": {"binary_data_size": 16}}]}).encode()
    status, text = error(client, "row_sums", raw=header + bytes(16),
                         headers={"inference-header-content-length": str(len(header))})
    assert status == 400
    assert text == "input 'rows': binary_data_size is 16 bytes but shape [1, 4] of FP64 needs " \
                   "32 (4 element(s) of 8 byte(s))"
    status, text = error(client, "row_sums", raw=b"\x1f\x8bnot gzip",
                         headers={"content-encoding": "gzip"})
    assert status == 400 and text == "the body is not valid gzip data"
    status, text = error(client, "row_sums", raw=b"{}", headers={"content-encoding": "br"})
    assert status == 415 and "'br' is not supported" in text


def test_unknown_models_and_versions_are_404(examples: dict[str, Client]) -> None:
    client = examples["numpy"]
    status, text = error(client, "nope", {"inputs": [ROWS]})
    assert status == 404 and text == "unknown model 'nope'; this server's models are: " \
                                     "row_sums, double"
    status, _, body = client.request("POST", "/v2/models/row_sums/versions/2/infer",
                                     json.dumps({"inputs": [ROWS]}).encode())
    assert status == 404 and json.loads(body) == {
        "error": "model 'row_sums' has no version '2'; its versions are: 1"}
    for path in ("/v2/models/nope", "/v2/models/nope/ready", "/v2/models/row_sums/versions/3",
                 "/v2/models/row_sums/versions/3/ready"):
        status, document = client.get(path)
        assert status == 404 and set(document) == {"error"}, path
    status, _, _ = client.request("GET", "/v2/models/row_sums/infer")
    assert status == 405


def test_body_limits_apply_to_compressed_and_plain_bodies() -> None:
    with serve(EXAMPLES["numpy"](), max_request_size=2048) as url:
        client = Client(url)
        big = json.dumps({"inputs": [tensor("rows", "FP64", [500, 4], [0.0] * 2000)]}).encode()
        status, text = error(client, "row_sums", raw=big)
        assert status == 413 and "this server accepts at most 2048 bytes" in text
        status, text = error(client, "row_sums", raw=gzip.compress(big),
                             headers={"content-encoding": "gzip"})
        assert status == 413 and "decompressed request body is larger" in text
