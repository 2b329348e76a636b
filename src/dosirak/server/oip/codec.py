"""Inference requests and responses of the Open Inference Protocol, in JSON and binary form.

    >>> request = decode_request(body, header_length=None)
    >>> request.inputs["input_series"].array
    array([[5.1, 3.5, 1.4, 0.2]])
    >>> body, header_length = encode_response("classify", "1", request, [("output", array, None)])

A request names its input tensors, each with a datatype, a shape and its data: JSON values (a
flat or nested list) or, with the binary extension, ``parameters.binary_data_size`` bytes of the
body's binary section. Every way a tensor can disagree with itself is a ``BadInput`` (400) that
names the tensor: the shape and the element count, the binary size and the shape, a value out
of its datatype's range, a name given twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dosirak.exceptions import BadInput
from dosirak.io.base import InvalidOutput
from dosirak.io.encoding import dumps, loads
from dosirak.server.oip.binary import array_bytes, split_body, tensor_from_bytes
from dosirak.server.oip.datatypes import BYTES, FIXED, check_datatype, datatype_of

#: Request parameters that steer the protocol itself, not echoed back.
_PROTOCOL_PARAMETERS = frozenset({"binary_data_output", "binary_data", "binary_data_size"})


@dataclass(slots=True)
class Tensor:
    """One input tensor of a request: the array has its datatype's dtype and its shape
    (``BYTES``: an ``object`` array of ``bytes``)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    array: np.ndarray
    parameters: dict[str, Any]


@dataclass(slots=True)
class InferRequest:
    """A decoded inference request."""

    id: str | None
    parameters: dict[str, Any]
    inputs: dict[str, Tensor]
    #: Requested outputs by name, each True/False for binary or None for the default; None
    #: when the request names none (every output is sent).
    outputs: dict[str, bool | None] | None
    #: ``parameters.binary_data_output``: outputs are binary unless they say otherwise.
    binary_output: bool


def decode_request(body: bytes | bytearray, header_length: str | None) -> InferRequest:
    """Read an inference request body (``header_length``: the Inference-Header-Content-Length
    header, None when absent: the whole body is JSON)."""
    header, binary = split_body(body, header_length)
    document = loads(header)
    # JSON booleans are spelled true and false: without them in the text, no tensor's data
    # holds one, and numeric data is spared the search (numpy reads true as 1).
    may_hold_bool = b"true" in header or b"false" in header
    if header_length is None and type(document) is dict and len(document) == 1:
        simple = _one_json_tensor(document, may_hold_bool)
        if simple is not None:
            return simple
    if not isinstance(document, dict):
        raise BadInput("an inference request is a JSON object with an \"inputs\" list")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadInput(f"\"id\" must be a string, got {request_id!r}")
    parameters = _parameters(document.get("parameters"), "the request")
    binary_output = parameters.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise BadInput("parameters.binary_data_output must be true or false")
    items = document.get("inputs")
    if not isinstance(items, list) or not items:
        raise BadInput("an inference request needs \"inputs\": a list of tensors, each with "
                       "name, datatype, shape and data")
    inputs: dict[str, Tensor] = {}
    offset = 0
    for index, item in enumerate(items):
        tensor, used = _input(item, index, binary[offset:] if offset else binary,
                              may_hold_bool)
        if tensor.name in inputs:
            raise BadInput(f"input {tensor.name!r} is given twice; send each tensor once")
        inputs[tensor.name] = tensor
        offset += used
    if offset != len(binary):
        raise BadInput(f"the body has {len(binary)} bytes after its JSON header but the "
                       f"inputs' binary_data_size add up to {offset}")
    return InferRequest(request_id, parameters, inputs, _outputs(document.get("outputs")),
                        binary_output)


def _one_json_tensor(document: dict[str, Any], may_hold_bool: bool) -> InferRequest | None:
    """The most common request, ``{"inputs": [{"name", "datatype", "shape", "data"}]}`` of a
    fixed-size datatype, read with fewer steps; None for anything else, which the general
    path reads (and explains when it is wrong)."""
    items = document.get("inputs")
    if type(items) is not list or len(items) != 1:
        return None
    item = items[0]
    if type(item) is not dict or len(item) != 4:
        return None
    name = item.get("name")
    datatype = item.get("datatype")
    shape = item.get("shape")
    data = item.get("data")
    if (type(name) is not str or not name or datatype not in FIXED or type(shape) is not list
            or data is None or not all(type(n) is int and n >= 0 for n in shape)):
        return None
    shape = tuple(shape)
    array = tensor_from_json(name, datatype, shape, data, may_hold_bool)
    return InferRequest(None, {}, {name: Tensor(name, datatype, shape, array, {})}, None, False)


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadInput(f"\"parameters\" of {where} must be a JSON object, got {value!r}")
    return value


def _input(item: Any, index: int, binary: memoryview,
           may_hold_bool: bool = True) -> tuple[Tensor, int]:
    """Input ``index`` of the request and the bytes of ``binary`` it took."""
    if not isinstance(item, dict):
        raise BadInput(f"inputs[{index}] must be an object with name, datatype, shape and data")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise BadInput(f"inputs[{index}] needs a \"name\" (a string)")
    parameters = _parameters(item.get("parameters"), f"input {name!r}")
    size = parameters.get("binary_data_size")
    datatype = check_datatype(name, item.get("datatype"), size is not None)
    shape = item.get("shape")
    if type(shape) is not list or not all(type(n) is int and n >= 0 for n in shape):
        raise BadInput(f"input {name!r}: \"shape\" must be a list of sizes (whole numbers >= 0), "
                       f"got {shape!r}")
    shape = tuple(shape)
    if size is not None:
        if type(size) is not int or size < 0:
            raise BadInput(f"input {name!r}: binary_data_size must be a number of bytes, got "
                           f"{size!r}")
        if "data" in item:
            raise BadInput(f"input {name!r} has both \"data\" and binary_data_size; send its "
                           "values one way")
        if size > len(binary):
            raise BadInput(f"input {name!r}: binary_data_size is {size} bytes but only "
                           f"{len(binary)} remain in the body")
        return Tensor(name, datatype, shape, tensor_from_bytes(name, datatype, shape,
                                                               binary[:size]), parameters), size
    if "data" not in item:
        raise BadInput(f"input {name!r} has no \"data\" (nor binary_data_size)")
    return Tensor(name, datatype, shape, tensor_from_json(name, datatype, shape, item["data"],
                                                          may_hold_bool), parameters), 0


def tensor_from_json(name: str, datatype: str, shape: tuple[int, ...], data: Any,
                     may_hold_bool: bool = True) -> np.ndarray:
    """The array of a JSON input: ``data`` flat or nested, with as many elements as ``shape``
    says, each in range of ``datatype`` (``may_hold_bool`` False: the request's text has no
    JSON boolean, so numbers need no search for one)."""
    count = math.prod(shape)
    if datatype == BYTES:
        elements = _flat_strings(name, data)
        if len(elements) != count:
            raise _count_error(name, shape, len(elements))
        array = np.empty(count, dtype=object)
        array[:] = elements
        return array.reshape(shape)
    try:
        array = np.asarray(data)
    except ValueError:
        raise BadInput(f"input {name!r}: its data is ragged (nested lists of unequal "
                       "lengths); send a flat list or lists of one length") from None
    except OverflowError:
        raise _range_error(name, datatype) from None
    if array.size != count:
        raise _count_error(name, shape, array.size)
    target = FIXED[datatype]
    kind = array.dtype.kind
    if count:
        if target.kind == "b":
            if kind != "b":
                raise BadInput(f"input {name!r}: BOOL data must be true or false, got "
                               f"{array.dtype.name} values")
        elif kind == "O":
            raise _range_error(name, datatype)  # integers past 64 bits, or mixed values
        elif target.kind in "iu" and kind == "f" and _past_int64(array):
            # orjson reads integers past 64 bits as floats: say what is wrong with them
            raise _range_error(name, datatype, np.iinfo(target).min, np.iinfo(target).max)
        elif kind not in ("iu" if target.kind in "iu" else "iuf") or (
                may_hold_bool and _holds_bool(data)):
            what = "booleans" if kind == "b" or _holds_bool(data) else f"{array.dtype.name} " \
                "values"
            raise BadInput(f"input {name!r}: {datatype} data must be "
                           f"{'whole ' if target.kind in 'iu' else ''}numbers, got {what}")
        elif target.kind in "iu":
            info = np.iinfo(target)
            if array.min() < info.min or array.max() > info.max:
                raise _range_error(name, datatype, info.min, info.max)
    if array.dtype == target:  # FP64 data read as float64, INT64 as int64: nothing to convert
        return array.reshape(shape)
    with np.errstate(over="ignore"):
        converted = array.astype(target).reshape(shape)
    if target.kind == "f" and target.itemsize < 8 and count and not np.isfinite(converted).all():
        largest = float(np.finfo(target).max)
        raise _range_error(name, datatype, -largest, largest)
    return converted


def _past_int64(array: np.ndarray) -> bool:
    whole = np.isfinite(array).all() and bool((array == np.floor(array)).all())
    return whole and bool((np.abs(array) >= 2.0**63).any())


def _flat_strings(name: str, data: Any) -> list[bytes]:
    if isinstance(data, str):
        return [data.encode("utf-8")]
    if not isinstance(data, list):
        raise BadInput(f"input {name!r}: BYTES data must be strings (a list of them)")
    out: list[bytes] = []
    for item in data:
        if isinstance(item, str):
            out.append(item.encode("utf-8"))
        elif isinstance(item, list):
            out.extend(_flat_strings(name, item))
        else:
            raise BadInput(f"input {name!r}: BYTES data must be strings, got {item!r}")
    return out


def _holds_bool(data: Any) -> bool:
    """True when nested lists ``data`` hold a JSON boolean (numpy reads them as 0 and 1)."""
    if type(data) is bool:
        return True
    if type(data) is not list:
        return False
    kinds = set(map(type, data))
    return bool in kinds or (list in kinds and any(_holds_bool(item) for item in data))


def _count_error(name: str, shape: tuple[int, ...], found: int) -> BadInput:
    return BadInput(f"input {name!r}: shape {list(shape)} has {math.prod(shape)} element(s) "
                    f"but its data has {found}")


def _range_error(name: str, datatype: str, low: float | None = None,
                 high: float | None = None) -> BadInput:
    bounds = f" ({low:g} to {high:g})" if low is not None and high is not None else ""
    return BadInput(f"input {name!r}: a value is out of the range of {datatype}{bounds}")


def _outputs(value: Any) -> dict[str, bool | None] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise BadInput("\"outputs\" must be a list of {\"name\": ...} objects")
    outputs: dict[str, bool | None] = {}
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadInput(f"outputs[{index}] needs a \"name\" (a string)")
        name = item["name"]
        if name in outputs:
            raise BadInput(f"output {name!r} is requested twice")
        parameters = _parameters(item.get("parameters"), f"output {name!r}")
        if "classification" in parameters:
            raise BadInput(f"output {name!r}: the classification extension is not supported; "
                           "ask for the output itself")
        binary = parameters.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise BadInput(f"output {name!r}: parameters.binary_data must be true or false")
        outputs[name] = binary
    return outputs


def encode_response(model: str, version: str, request: InferRequest,
                    outputs: list[tuple[str, np.ndarray, dict[str, Any] | None]]
                    ) -> tuple[bytes, int | None]:
    """The response body and, when it has a binary section, its JSON header's length.

    ``outputs`` are (name, array, parameters) in the order to send; those the request did not
    ask for are left out.
    """
    requested = request.outputs
    if (requested is None and not request.binary_output and request.id is None
            and not request.parameters and len(outputs) == 1 and outputs[0][2] is None):
        simple = _one_json_output(model, version, *outputs[0][:2])
        if simple is not None:
            return simple, None
    if requested is not None:
        known = {name for name, _, _ in outputs}
        unknown = [name for name in requested if name not in known]
        if unknown:
            raise BadInput(f"model {model!r} has no output {unknown[0]!r}; its outputs are: "
                           f"{', '.join(sorted(known)) or '(none)'}")
    tensors: list[dict[str, Any]] = []
    buffers: list[bytes] = []
    for name, array, parameters in outputs:
        if requested is not None and name not in requested:
            continue
        binary = requested.get(name) if requested is not None else None
        if binary is None:
            binary = request.binary_output
        datatype = datatype_of(array.dtype)
        if datatype is None:
            raise InvalidOutput(f"output {name!r} holds {array.dtype} values, which no tensor "
                                "datatype carries; return numbers, booleans or text")
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        extra = dict(parameters) if parameters else {}
        if binary:
            data = array_bytes(array, datatype)
            extra["binary_data_size"] = len(data)
            buffers.append(data)
        else:
            tensor["data"] = _json_data(name, array, datatype)
        if extra:
            tensor["parameters"] = extra
        tensors.append(tensor)
    response: dict[str, Any] = {"model_name": model, "model_version": version}
    if request.id is not None:
        response["id"] = request.id
    if request.parameters:
        echoed = {key: value for key, value in request.parameters.items()
                  if key not in _PROTOCOL_PARAMETERS}
        if echoed:
            response["parameters"] = echoed
    response["outputs"] = tensors
    header = dumps(response)
    if not buffers:
        return header, None
    return b"".join((header, *buffers)), len(header)


def _one_json_output(model: str, version: str, name: str, array: np.ndarray) -> bytes | None:
    """The most common answer, one numeric tensor in JSON, written with fewer steps (the same
    bytes as the general path); None for anything else."""
    datatype = datatype_of(array.dtype)
    if datatype is None or datatype == BYTES or not array.dtype.isnative:
        return None
    return dumps({"model_name": model, "model_version": version, "outputs": [
        {"name": name, "datatype": datatype, "shape": list(array.shape),
         "data": array.reshape(-1)}]})


def _json_data(name: str, array: np.ndarray, datatype: str) -> Any:
    if datatype != BYTES:
        flat = array.reshape(-1)
        # orjson writes numpy arrays of these types itself; others go through lists
        return flat if flat.dtype.kind in "biuf" and flat.dtype.isnative else flat.tolist()
    texts = []
    for item in array.reshape(-1):
        if isinstance(item, (bytes, np.bytes_)):
            try:
                item = bytes(item).decode("utf-8")
            except UnicodeDecodeError:
                raise BadInput(f"output {name!r} holds bytes that are not UTF-8 text, which JSON "
                               "cannot carry; ask for it in binary (outputs[].parameters."
                               "binary_data: true)") from None
        texts.append(item if isinstance(item, str) else str(item))
    return texts
