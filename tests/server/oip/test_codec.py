"""The protocol's codec on its own: tensors in JSON and binary form, every datatype, every way a
request can disagree with itself (each a BadInput naming the tensor)."""

from __future__ import annotations

import gzip
import json
import struct
import zlib

import numpy as np
import pytest

from dosirak.exceptions import BadInput, PayloadTooLarge, UnsupportedMediaType
from dosirak.io.encoding import dumps, loads
from dosirak.server.oip.binary import (
    accepted_encoding,
    compress,
    inflate,
    join_elements,
    split_elements,
)
from dosirak.server.oip.codec import decode_request, encode_response
from dosirak.server.oip.datatypes import FIXED, datatype_of, declared_datatype


def request(*inputs: dict, **extra: object) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


def binary_request(tensors: list[tuple[str, str, list[int], bytes]], **extra: object
                   ) -> tuple[bytes, str]:
    header = dumps({"inputs": [{"name": name, "datatype": datatype, "shape": shape,
                                "parameters": {"binary_data_size": len(data)}}
                               for name, datatype, shape, data in tensors], **extra})
    return header + b"".join(data for *_, data in tensors), str(len(header))


@pytest.mark.parametrize("datatype", sorted(FIXED))
def test_every_fixed_datatype_in_json_and_binary(datatype: str) -> None:
    dtype = FIXED[datatype]
    values = np.array([[0, 1], [1, 0]], dtype=dtype)
    json_data = values.tolist()
    decoded = decode_request(request({"name": "x", "datatype": datatype, "shape": [2, 2],
                                      "data": json_data}), None).inputs["x"].array
    assert decoded.dtype == dtype and decoded.tolist() == json_data
    body, length = binary_request([("x", datatype, [2, 2], values.tobytes())])
    decoded = decode_request(body, length).inputs["x"].array
    assert decoded.dtype == dtype and decoded.tolist() == json_data
    assert decoded.flags.writeable  # API code may write to its input


def test_flat_and_nested_data_give_the_same_tensor() -> None:
    flat = decode_request(request({"name": "x", "datatype": "FP32", "shape": [2, 2],
                                   "data": [1, 2, 3, 4]}), None).inputs["x"].array
    nested = decode_request(request({"name": "x", "datatype": "FP32", "shape": [2, 2],
                                     "data": [[1, 2], [3, 4]]}), None).inputs["x"].array
    assert flat.shape == nested.shape == (2, 2) and (flat == nested).all()


def test_bf16_is_binary_only_and_widened_to_float32() -> None:
    values = np.array([1.5, -2.0, 3.140625], dtype=np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    body, length = binary_request([("x", "BF16", [3], bf16)])
    decoded = decode_request(body, length).inputs["x"].array
    assert decoded.dtype == np.float32 and decoded.tolist() == values.tolist()
    with pytest.raises(BadInput, match="BF16 tensors are sent in binary only"):
        decode_request(request({"name": "x", "datatype": "BF16", "shape": [1], "data": [1]}),
                       None)


def test_bytes_tensors_both_ways() -> None:
    elements = [b"hello", b"", b"\xff\x00binary"]
    assert split_elements("x", memoryview(join_elements(elements))) == elements
    body, length = binary_request([("x", "BYTES", [3], join_elements(elements))])
    assert decode_request(body, length).inputs["x"].array.tolist() == elements
    decoded = decode_request(request({"name": "x", "datatype": "BYTES", "shape": [1, 2],
                                      "data": [["a", "b"]]}), None).inputs["x"].array
    assert decoded.tolist() == [[b"a", b"b"]]


def test_binary_and_json_inputs_mix_in_one_request() -> None:
    header = dumps({"inputs": [
        {"name": "a", "datatype": "INT32", "shape": [2], "parameters": {"binary_data_size": 8}},
        {"name": "b", "datatype": "FP64", "shape": [1], "data": [2.5]},
        {"name": "c", "datatype": "UINT8", "shape": [3], "parameters": {"binary_data_size": 3}},
    ]})
    body = header + np.array([7, -7], "<i4").tobytes() + bytes([1, 2, 3])
    inputs = decode_request(body, str(len(header))).inputs
    assert inputs["a"].array.tolist() == [7, -7]
    assert inputs["b"].array.tolist() == [2.5]
    assert inputs["c"].array.tolist() == [1, 2, 3]


@pytest.mark.parametrize(("tensor", "message"), [
    ({"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3]},
     r"shape \[2, 2\] has 4 element\(s\) but its data has 3"),
    ({"name": "x", "datatype": "INT8", "shape": [1], "data": [128]},
     r"out of the range of INT8 \(-128 to 127\)"),
    ({"name": "x", "datatype": "UINT8", "shape": [1], "data": [-1]}, "out of the range of UINT8"),
    ({"name": "x", "datatype": "INT64", "shape": [1], "data": [2**70]}, "out of the range"),
    ({"name": "x", "datatype": "FP16", "shape": [1], "data": [1e6]},
     "out of the range of FP16"),
    ({"name": "x", "datatype": "FP32", "shape": [1], "data": [1e300]},
     "out of the range of FP32"),
    ({"name": "x", "datatype": "INT32", "shape": [1], "data": [1.5]}, "must be whole numbers"),
    ({"name": "x", "datatype": "FP32", "shape": [2], "data": [1, True]}, "got booleans"),
    ({"name": "x", "datatype": "BOOL", "shape": [1], "data": [1]}, "must be true or false"),
    ({"name": "x", "datatype": "FP32", "shape": [2], "data": ["a", "b"]}, "must be numbers"),
    ({"name": "x", "datatype": "BYTES", "shape": [1], "data": [1]}, "must be strings"),
    ({"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3]]}, "ragged"),
    ({"name": "x", "datatype": "FLOAT", "shape": [1], "data": [1]}, "unknown datatype 'FLOAT'"),
    ({"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}, "shape"),
    ({"name": "x", "datatype": "FP32", "shape": [1]}, "has no \"data\""),
    ({"datatype": "FP32", "shape": [1], "data": [1]}, "needs a \"name\""),
])
@pytest.mark.parametrize("general", [False, True])
def test_json_tensor_errors_name_the_tensor(tensor: dict, message: str, general: bool) -> None:
    # general: with "parameters", the request is not the common one the short path reads
    with pytest.raises(BadInput, match=message) as caught:
        decode_request(request({**tensor, "parameters": {}} if general else tensor), None)
    if "name" in tensor:
        assert "'x'" in str(caught.value)


@pytest.mark.parametrize("datatype", sorted(FIXED))
@pytest.mark.parametrize("data", [[[0, 1], [1, 0]], [0, 1, 1, 0], [[0.0, 1.0], [1.0, 0.0]],
                                  [[False, True], [True, False]]])
def test_the_common_request_reads_as_the_general_path_does(datatype: str, data: list) -> None:
    tensor = {"name": "x", "datatype": datatype, "shape": [2, 2], "data": data}
    outcomes = []
    for body in (request(tensor), request({**tensor, "parameters": {}})):
        try:
            array = decode_request(body, None).inputs["x"].array
            outcomes.append((array.dtype, array.shape, array.tolist()))
        except BadInput as error:
            outcomes.append(str(error))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("array", [np.array([0, 2]), np.array([[1.5, 2.0]], "<f4"),
                                   np.array([True]), np.array([], "<f8"),
                                   np.array([1, 2], ">i4"), np.array(["a", "b"])])
def test_the_common_response_is_written_as_the_general_path_does(array: np.ndarray) -> None:
    plain = decode_request(request({"name": "x", "datatype": "FP64", "shape": [1],
                                    "data": [1]}), None)
    listed = decode_request(request({"name": "x", "datatype": "FP64", "shape": [1],
                                     "data": [1]}, outputs=[{"name": "output"}]), None)
    short, _ = encode_response("m", "1", plain, [("output", array, None)])
    general, _ = encode_response("m", "1", listed, [("output", array, None)])
    assert short == general
    assert loads(short)["outputs"][0]["data"] == array.reshape(-1).tolist()


def test_binary_errors() -> None:
    data = np.zeros(3, "<f4").tobytes()
    body, length = binary_request([("x", "FP32", [4], data)])
    with pytest.raises(BadInput, match=r"binary_data_size is 12 bytes but shape \[4\] of FP32 "
                                       r"needs 16"):
        decode_request(body, length)
    body, length = binary_request([("x", "FP32", [3], data)])
    with pytest.raises(BadInput, match="after its JSON header but the inputs' binary_data_size "
                                       "add up to 12"):
        decode_request(body + b"extra", length)
    with pytest.raises(BadInput, match="only 8 remain"):
        decode_request(body[:-4], length)
    with pytest.raises(BadInput, match="says the JSON header is"):
        decode_request(body, str(len(body) + 1))
    with pytest.raises(BadInput, match="must be a number of bytes"):
        decode_request(body, "twelve")
    body, length = binary_request([("x", "BYTES", [1], struct.pack("<I", 10) + b"abc")])
    with pytest.raises(BadInput, match="says it has 10 bytes but only 3 remain"):
        decode_request(body, length)
    body, length = binary_request([("x", "BYTES", [2], join_elements([b"a"]))])
    with pytest.raises(BadInput, match=r"holds 1 BYTES element\(s\) but its shape \[2\] has 2"):
        decode_request(body, length)
    body, length = binary_request([("x", "BOOL", [1], b"\x02")])
    with pytest.raises(BadInput, match="BOOL data must be bytes 0 or 1"):
        decode_request(body, length)


def test_request_level_errors() -> None:
    tensor = {"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}
    with pytest.raises(BadInput, match="given twice"):
        decode_request(request(tensor, tensor), None)
    with pytest.raises(BadInput, match="needs \"inputs\""):
        decode_request(dumps({"inputs": []}), None)
    with pytest.raises(BadInput, match="malformed JSON"):
        decode_request(b"{", None)
    with pytest.raises(BadInput, match="\"id\" must be a string"):
        decode_request(request(tensor, id=5), None)
    with pytest.raises(BadInput, match="requested twice"):
        decode_request(request(tensor, outputs=[{"name": "o"}, {"name": "o"}]), None)
    with pytest.raises(BadInput, match="classification extension is not supported"):
        decode_request(request(tensor, outputs=[{"name": "o", "parameters":
                                                 {"classification": 2}}]), None)


def test_response_json_binary_requested_outputs_id_and_parameters() -> None:
    parsed = decode_request(request({"name": "x", "datatype": "FP32", "shape": [1], "data": [1]},
                                    id="req-7", parameters={"tenant": "a",
                                                            "binary_data_output": False},
                                    outputs=[{"name": "b", "parameters": {"binary_data": True}},
                                             {"name": "a"}]), None)
    a = np.array([[1.5, 2.5]], dtype=np.float32)
    b = np.array([b"yes", b"\xffno"], dtype=object)
    c = np.array([1], dtype=np.int64)
    body, length = encode_response("m", "1", parsed, [("a", a, None), ("b", b, None),
                                                      ("c", c, None)])
    assert length is not None
    header = loads(body[:length])
    assert header["id"] == "req-7" and header["parameters"] == {"tenant": "a"}
    assert [o["name"] for o in header["outputs"]] == ["a", "b"]  # c was not asked for
    assert header["outputs"][0] == {"name": "a", "datatype": "FP32", "shape": [1, 2],
                                    "data": [1.5, 2.5]}
    assert header["outputs"][1]["parameters"] == {"binary_data_size": len(body) - length}
    assert split_elements("b", memoryview(body[length:])) == [b"yes", b"\xffno"]
    parsed.outputs = {"nope": None}
    with pytest.raises(BadInput, match="model 'm' has no output 'nope'; its outputs are: a"):
        encode_response("m", "1", parsed, [("a", a, None)])


def test_non_utf8_bytes_need_binary() -> None:
    parsed = decode_request(request({"name": "x", "datatype": "FP32", "shape": [1],
                                     "data": [1]}), None)
    with pytest.raises(BadInput, match=r"not UTF-8 text.*binary_data: true"):
        encode_response("m", "1", parsed, [("o", np.array([b"\xff"], dtype=object), None)])


def test_compression() -> None:
    data = b"tensor " * 1000
    assert inflate(gzip.compress(data), "gzip", 10_000) == data
    assert inflate(gzip.compress(data[:7]) + gzip.compress(data[7:]), "gzip", 10_000) == data
    assert inflate(zlib.compress(data), "deflate", 10_000) == data
    raw = zlib.compressobj(6, zlib.DEFLATED, -15)
    assert inflate(raw.compress(data) + raw.flush(), "deflate", 10_000) == data
    assert zlib.decompress(compress(data, "deflate")) == data
    assert gzip.decompress(compress(data, "gzip")) == data
    with pytest.raises(PayloadTooLarge, match="decompressed request body is larger"):
        inflate(gzip.compress(b"\0" * 100_000), "gzip", 1000)
    with pytest.raises(BadInput, match="not valid gzip"):
        inflate(b"plain", "gzip", 1000)
    with pytest.raises(BadInput, match="not valid gzip"):
        inflate(gzip.compress(data)[:-10], "gzip", 10_000)
    with pytest.raises(UnsupportedMediaType, match="'br' is not supported"):
        inflate(data, "br", 10_000)
    assert accepted_encoding("gzip, deflate, br") == "gzip"
    assert accepted_encoding("deflate") == "deflate"
    assert accepted_encoding("gzip;q=0, deflate;q=0.5") == "deflate"
    assert accepted_encoding("br, identity") is None


def test_datatype_names() -> None:
    assert datatype_of(np.dtype("float32")) == "FP32"
    assert datatype_of(np.dtype(">i4")) == "INT32"
    assert datatype_of(np.dtype("U3")) == "BYTES"
    assert datatype_of(np.dtype("complex64")) is None
    assert declared_datatype(None) == "FP64"
    assert declared_datatype("uint16") == "UINT16"
