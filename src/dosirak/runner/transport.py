"""Transport: how call arguments and results cross between a service and its runner workers.

Nothing here uses pickle. A frame is a 12-byte prefix (header length, payload length), a JSON
header that describes the value tree, then the payload: the raw bytes of every array, aligned::

    prefix  <u32 header bytes><u64 payload bytes>
    header  {"m": "predict", "a": [{"~": "a", "d": "<f4", "s": [2, 3], "o": 0, "n": 24}], "k": {}}
    payload 24 bytes of float32, padded to 64-byte boundaries between buffers

With tracing on, a call's header also carries ``"t"``, the W3C ``traceparent`` of the span the
call was made in (the runner batch's), so that the worker's span of the call is its child.

JSON scalars (None, bool, int, float, str) and lists are themselves; every other value is a JSON
object whose ``"~"`` key names its kind (tuple, dict, bytes, numpy array or scalar, pandas
DataFrame/Series/Index, torch tensor, and the floats and ints JSON cannot spell: NaN, infinities,
ints beyond 64 bits). Headers go through orjson (9x faster than the stdlib encoder here). Arrays
are written straight from their memory with ``sendmsg`` (no ``tobytes()``) and read back with
``np.frombuffer`` over the one buffer the frame was received into, so an array costs one copy
into the socket and one out of it. Tensors are only packed when torch is already imported; a
received tensor imports torch (the sender had it, so the environment does too).

Decoding trusts nothing: dtypes are checked (no object dtype, whose bytes would be pointers) and
every buffer must lie inside the payload.
"""

from __future__ import annotations

import contextlib
import math
import socket
import struct
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from dosirak.exceptions import InvalidArgument, RunnerError

PREFIX = struct.Struct("<IQ")
ALIGN = 64  # payload offsets are multiples of this, so every dtype (and SIMD code) is aligned
SMALL_PAYLOAD = 64 * 1024  # larger payloads are read straight into their own buffer
_ZEROS = bytes(ALIGN)
IOV_MAX = 512  # below every platform's IOV_MAX (1024 on Linux)
_ARRAY_KINDS = frozenset("biufcmMSU")  # bool, ints, floats, complex, times, fixed bytes/str
_MAX_HEADER = 1 << 30

_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1  # what orjson writes as a JSON number
_dumps = orjson.dumps


def _loads(text: Any) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise RunnerError("malformed runner frame: the header is not JSON") from None


_JSON_SCALARS = (str, int, float, bool, type(None))

Parts = list[Any]  # bytes-like pieces of one frame, handed to sendmsg as they are
Payload = bytearray | np.ndarray  # a received frame's buffers (large ones: a uint8 ndarray)


class Unsupported(InvalidArgument):
    """A value has no pickle-free wire form (raised on the sending side)."""


def _unsupported(value: Any, detail: str = "") -> Unsupported:
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    return Unsupported(
        f"cannot send {kind}{detail} to a runner worker without pickle; convert it to a numpy "
        "array, a DataFrame, or JSON-like values (None, bool, int, float, str, bytes, and "
        "lists, tuples and str-keyed dicts of these)"
    )


class Packer:
    """Turns a value tree into a JSON-able tree plus the raw buffers it refers to."""

    __slots__ = ("parts", "size")

    def __init__(self) -> None:
        self.parts: list[Any] = []
        self.size = 0

    def buffer(self, data: Any, nbytes: int) -> int:
        """Append raw bytes to the payload; return their offset."""
        pad = -self.size % ALIGN
        if pad:
            self.parts.append(_ZEROS[:pad])
            self.size += pad
        offset = self.size
        if nbytes:
            self.parts.append(data)
            self.size += nbytes
        return offset

    def pack(self, value: Any) -> Any:
        kind = type(value)
        if kind is str or kind is bool or value is None:
            return value
        if kind is float:
            # JSON has no NaN or infinity (x - x is NaN exactly for those).
            return value if value - value == 0.0 else {"~": "f", "v": repr(value)}
        if kind is int:
            return value if _INT_MIN <= value <= _INT_MAX else {"~": "i", "v": str(value)}
        if kind is np.ndarray:
            return self.array(value, "a")
        if kind is list:
            return [self.pack(item) for item in value]
        if kind is tuple:
            return {"~": "t", "v": [self.pack(item) for item in value]}
        if kind is dict:
            return {"~": "d", "v": self.pack_dict(value)}
        if kind is bytes or kind is bytearray or kind is memoryview:
            view = memoryview(value).cast("B")
            return {"~": "b", "o": self.buffer(view, view.nbytes), "n": view.nbytes}
        if isinstance(value, np.generic):
            return self.array(np.asarray(value), "g")
        return self.pack_other(value)

    def pack_dict(self, value: dict[Any, Any]) -> dict[str, Any]:
        packed = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _unsupported(value, f" with a non-str key {key!r}")
            packed[key] = self.pack(item)
        return packed

    def pack_other(self, value: Any) -> Any:
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, (int, float, str)):  # IntEnum, str subclasses...: their plain value
            return (int if isinstance(value, int) else float if isinstance(value, float)
                    else str)(value)
        pandas = sys.modules.get("pandas")
        if pandas is not None:
            if isinstance(value, pandas.DataFrame):
                return self.dataframe(value)
            if isinstance(value, pandas.Series):
                return {"~": "se", "v": self.column(value), "x": self.index(value.index),
                        "n": self.pack(value.name)}
            if isinstance(value, pandas.Index):
                return self.index(value)
        torch = sys.modules.get("torch")  # a tensor can only exist if torch was imported
        if torch is not None and isinstance(value, torch.Tensor):
            return self.tensor(value, torch)
        if isinstance(value, np.ndarray):  # subclasses (np.matrix, masked arrays) lose nothing
            return self.array(np.asarray(value), "a")
        raise _unsupported(value)

    def array(self, array: np.ndarray, tag: str) -> dict[str, Any]:
        dtype = array.dtype
        if dtype.kind not in _ARRAY_KINDS:
            if dtype.kind == "O":
                return {"~": "o", "s": list(array.shape), "v": self.objects(array)}
            raise _unsupported(array, f" of dtype {dtype}")
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)  # the one copy a strided array needs
        try:
            raw: Any = memoryview(array).cast("B")  # type: ignore[arg-type]
        except (ValueError, TypeError):  # datetimes and empty arrays export no buffer
            raw = array.reshape(-1).view(np.uint8)
        return {"~": tag, "d": dtype.str, "s": list(array.shape),
                "o": self.buffer(raw, raw.nbytes), "n": raw.nbytes}

    def objects(self, array: np.ndarray) -> Any:
        items = array.ravel().tolist()
        plain = True
        for item in items:
            kind = type(item)
            if kind is str or item is None or kind is bool:
                continue
            if not isinstance(item, _JSON_SCALARS):
                raise _unsupported(item, " inside an object array")
            number: Any = item  # a float or an int here, as ``kind`` says
            if not ((kind is float and number - number == 0.0) or
                    (kind is int and _INT_MIN <= number <= _INT_MAX)):
                plain = False  # NaN (pandas' missing value), a huge int, a numpy scalar...
        return items if plain else {"~": "l", "v": [self.pack(item) for item in items]}

    def column(self, values: Any) -> Any:
        """A Series' or Index's values, keeping pandas' own dtypes where they matter."""
        dtype = values.dtype
        if isinstance(dtype, np.dtype):
            return self.array(values.to_numpy(copy=False), "a")
        pandas = sys.modules["pandas"]
        if isinstance(dtype, pandas.CategoricalDtype):
            categorical = values.array
            return {"~": "cat", "c": self.array(categorical.codes, "a"),
                    "k": self.index(categorical.categories), "r": bool(dtype.ordered)}
        if isinstance(dtype, pandas.StringDtype):
            items = [None if item is pandas.NA or item is None or
                     (type(item) is float and math.isnan(item)) else item
                     for item in values.array.tolist()]
            # pandas' "str" dtype marks missing values with NaN, "string" with pd.NA.
            return {"~": "str", "st": dtype.storage, "v": items,
                    "nan": dtype.na_value is not pandas.NA}
        if type(dtype).__name__ in _MASKED_DTYPES:
            mask = np.asarray(values.isna())
            fill = False if dtype.kind == "b" else 0
            data = values.array.to_numpy(dtype=dtype.numpy_dtype, na_value=fill)
            return {"~": "na", "d": dtype.name, "v": self.array(data, "a"),
                    "m": self.array(mask, "a")}
        raise _unsupported(values, f" with pandas dtype {dtype}")

    def index(self, index: Any) -> dict[str, Any]:
        pandas = sys.modules["pandas"]
        name = self.pack(index.name)
        if isinstance(index, pandas.RangeIndex):
            return {"~": "ri", "r": [index.start, index.stop, index.step], "n": name}
        if isinstance(index, pandas.MultiIndex):
            raise _unsupported(index, " (reset_index() turns its levels into columns)")
        return {"~": "ix", "v": self.column(index), "n": name}

    def dataframe(self, frame: Any) -> dict[str, Any]:
        columns = [self.column(frame.iloc[:, position]) for position in range(frame.shape[1])]
        return {"~": "df", "c": columns, "n": self.index(frame.columns),
                "x": self.index(frame.index)}

    def tensor(self, tensor: Any, torch: Any) -> dict[str, Any]:
        if tensor.device.type != "cpu":
            raise _unsupported(tensor, f" on device {tensor.device} (move it with .cpu() first)")
        tensor = tensor.detach().contiguous()
        dtype = str(tensor.dtype).removeprefix("torch.")
        if dtype not in _TORCH_DTYPES:
            raise _unsupported(tensor, f" of dtype {tensor.dtype}")
        raw = tensor.reshape(-1).view(torch.uint8).numpy()  # works for bfloat16 too
        return {"~": "pt", "d": dtype, "s": list(tensor.shape),
                "o": self.buffer(raw, raw.nbytes), "n": raw.nbytes}


_MASKED_DTYPES = frozenset({
    "Int8Dtype", "Int16Dtype", "Int32Dtype", "Int64Dtype", "UInt8Dtype", "UInt16Dtype",
    "UInt32Dtype", "UInt64Dtype", "Float32Dtype", "Float64Dtype", "BooleanDtype",
})
_TORCH_DTYPES = frozenset({
    "float16", "bfloat16", "float32", "float64", "complex64", "complex128", "uint8", "int8",
    "int16", "int32", "int64", "bool", "uint16", "uint32", "uint64",
})


# ----- frames ---------------------------------------------------------------------------------


def frame(header: dict[str, Any], packer: Packer | None = None) -> Parts:
    """The pieces of one frame, ready for ``sendmsg``."""
    head = _dumps(header)
    payload = packer.size if packer is not None else 0
    parts = [PREFIX.pack(len(head), payload) + head]
    if packer is not None:
        parts += packer.parts
    return parts


def encode_call(method: str, args: Sequence[Any], kwargs: dict[str, Any],
                trace: str | None = None) -> Parts:
    """A call frame; raises ``InvalidArgument`` for a value without a wire form. ``trace``:
    the W3C ``traceparent`` of the caller's span, when tracing is on (key ``"t"``)."""
    packer = Packer()
    pack = packer.pack
    header = {"m": method, "a": [pack(arg) for arg in args],
              "k": packer.pack_dict(kwargs) if kwargs else {}}
    if trace is not None:
        header["t"] = trace
    return frame(header, packer)


def encode_result(value: Any) -> Parts:
    packer = Packer()
    return frame({"r": packer.pack(value)}, packer)


def encode_error(error: BaseException) -> Parts:
    """An error frame: the exception's type name, message and formatted traceback."""
    text = "".join(traceback.format_exception(error))
    return frame({"e": [type(error).__name__, str(error), text]})


def decode_call(header: dict[str, Any], payload: Payload) -> tuple[str, list[Any],
                                                                      dict[str, Any]]:
    """The method name, positional and keyword arguments of a call frame."""
    try:
        unpack = Unpacker(payload).unpack
        kwargs = {key: unpack(value) for key, value in header["k"].items()}
        return header["m"], [unpack(arg) for arg in header["a"]], kwargs
    except RunnerError:
        raise
    except Exception as error:
        raise _malformed(error) from None


def decode_reply(header: dict[str, Any], payload: Payload) -> Any:
    """The value of a result frame, or ``RunnerError`` raised for an error frame."""
    try:
        if "r" in header:
            return Unpacker(payload).unpack(header["r"])
        error = remote_error(header["e"])
    except RunnerError:
        raise
    except Exception as problem:
        raise _malformed(problem) from None
    raise error


def _malformed(error: Exception) -> RunnerError:
    return RunnerError(f"malformed runner frame ({type(error).__name__}: {error})",
                       error_type="TransportError")


def remote_error(error: Sequence[Any]) -> RunnerError:
    """The caller-side error for a (type name, message[, traceback]) reported by a worker."""
    type_name, message = str(error[0]), str(error[1])
    return RunnerError(f"{type_name}: {message}", error_type=type_name,
                       remote_traceback=str(error[2]) if len(error) > 2 else None)


# ----- decoding -------------------------------------------------------------------------------


class Unpacker:
    """Rebuilds values from a header tree and the payload they point into (no copies)."""

    __slots__ = ("payload",)

    def __init__(self, payload: Payload) -> None:
        self.payload = payload

    def unpack(self, node: Any) -> Any:
        if type(node) is list:
            return [self.unpack(item) for item in node]
        if type(node) is not dict:
            return node
        tag = node["~"]
        if tag == "a":
            return self.array(node)
        if tag == "t":
            return tuple(self.unpack(item) for item in node["v"])
        if tag == "d":
            return {key: self.unpack(value) for key, value in node["v"].items()}
        if tag == "b":
            start, size = self.span(node)
            return bytes(memoryview(self.payload)[start:start + size])  # type: ignore[arg-type]
        if tag == "g":
            return self.array(node)[()]
        if tag == "f":
            return float(node["v"])
        if tag == "i":
            return int(node["v"])
        if tag == "o":
            items = node["v"]
            if type(items) is dict:  # items that needed tagging, one by one
                items = [self.unpack(item) for item in items["v"]]
            array = np.empty(len(items), dtype=object)
            array[:] = items
            return array.reshape(node["s"])
        decode = _PANDAS_TAGS.get(tag)
        if decode is not None:
            return decode(self, node, _import("pandas"))
        if tag == "pt":
            return self.tensor(node)
        raise RunnerError(f"malformed runner frame: unknown value kind {tag!r}")

    def span(self, node: dict[str, Any]) -> tuple[int, int]:
        start, size = node["o"], node["n"]
        if not (type(start) is int and type(size) is int and start >= 0
                and 0 <= size <= len(self.payload) - start):
            raise RunnerError("malformed runner frame: a buffer lies outside the payload")
        return start, size

    def array(self, node: dict[str, Any]) -> np.ndarray:
        name = node["d"]
        dtype = _DTYPES.get(name) if type(name) is str else None
        if dtype is None:
            dtype = _checked_dtype(name)
        shape = tuple(node["s"])
        start, size = self.span(node)
        count = math.prod(shape)
        if count * dtype.itemsize != size:
            raise RunnerError("malformed runner frame: an array's size does not match its shape")
        if count == 0:
            return np.empty(shape, dtype)
        return np.frombuffer(self.payload, dtype, count, start).reshape(shape)

    def tensor(self, node: dict[str, Any]) -> Any:
        torch = _import("torch")
        name = node["d"]
        if name not in _TORCH_DTYPES:
            raise RunnerError(f"malformed runner frame: tensor dtype {name!r} is not allowed")
        dtype = getattr(torch, name)
        shape = tuple(node["s"])
        start, size = self.span(node)
        if size == 0:
            return torch.empty(shape, dtype=dtype)
        flat = torch.frombuffer(self.payload, dtype=torch.uint8, count=size, offset=start)
        return flat.view(dtype).reshape(shape)

    def values(self, node: dict[str, Any], pandas: Any) -> Any:
        tag = node["~"]
        if tag == "cat":
            categories = self.unpack(node["k"])
            return pandas.Categorical.from_codes(self.array(node["c"]), categories=categories,
                                                 ordered=node["r"])
        if tag == "str":
            options = {"na_value": np.nan} if node.get("nan") else {}
            return pandas.array(node["v"], dtype=pandas.StringDtype(node["st"], **options))
        if tag == "na":
            array = pandas.array(self.array(node["v"]), dtype=node["d"])
            mask = self.array(node["m"])
            if mask.any():
                array[mask] = pandas.NA
            return array
        return self.unpack(node)


_DTYPES: dict[str, np.dtype[Any]] = {}


def _checked_dtype(name: Any) -> np.dtype[Any]:
    """A received dtype, refused unless it is plain data (object dtypes hold pointers)."""
    try:
        dtype = np.dtype(name if type(name) is str else "O")
    except TypeError:
        dtype = np.dtype("O")
    if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise RunnerError(f"malformed runner frame: dtype {name!r} is not allowed")
    if len(_DTYPES) < 256:
        _DTYPES[name] = dtype
    return dtype


def _series(unpacker: Unpacker, node: dict[str, Any], pandas: Any) -> Any:
    return pandas.Series(unpacker.values(node["v"], pandas), index=unpacker.unpack(node["x"]),
                         name=unpacker.unpack(node["n"]), copy=False)


def _index(unpacker: Unpacker, node: dict[str, Any], pandas: Any) -> Any:
    name = unpacker.unpack(node["n"])
    if node["~"] == "ri":
        start, stop, step = node["r"]
        return pandas.RangeIndex(start, stop, step, name=name)
    return pandas.Index(unpacker.values(node["v"], pandas), name=name, copy=False)


def _dataframe(unpacker: Unpacker, node: dict[str, Any], pandas: Any) -> Any:
    columns = {position: unpacker.values(column, pandas)
               for position, column in enumerate(node["c"])}
    frame = pandas.DataFrame(columns, index=unpacker.unpack(node["x"]), copy=False)
    frame.columns = unpacker.unpack(node["n"])
    return frame


_PANDAS_TAGS = {"df": _dataframe, "se": _series, "ix": _index, "ri": _index}


def _import(name: str) -> Any:
    """The module a received value needs; the sender had it, so it is installed here too."""
    module = sys.modules.get(name)
    if module is None:
        import importlib

        module = importlib.import_module(name)
    return module


# ----- sockets --------------------------------------------------------------------------------


def send_all(sock: socket.socket, parts: Parts) -> None:
    """Write a whole frame to a blocking socket, gathering its pieces with ``sendmsg``."""
    sent = 0
    if len(parts) <= IOV_MAX:
        sent = sock.sendmsg(parts)
        if sent == frame_size(parts):
            return
    views = advance([memoryview(part).cast("B") for part in parts], sent)
    while views:
        sent = sock.sendmsg(views[:IOV_MAX])
        views = advance(views, sent)


def frame_size(parts: Parts) -> int:
    """Bytes in a frame (its pieces are bytes or flat uint8 arrays, so len() counts bytes)."""
    return sum(map(len, parts))


def advance(views: list[memoryview], sent: int) -> list[memoryview]:
    """What is left to write of ``views`` once ``sent`` bytes went out."""
    for position, view in enumerate(views):
        size = view.nbytes
        if sent < size:
            rest = views[position:]
            if sent:
                rest[0] = view[sent:]
            return rest
        sent -= size
    return []


def tune(sock: socket.socket, size: int = 4 << 20) -> None:
    """Bigger socket buffers: a 4 MB array crosses in a few writes instead of dozens."""
    for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        # Capped or refused: the default still works, only slower.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, size)


class Receiver:
    """Reassembles frames from a stream socket.

    Small frames are read into a reusable scratch buffer (one ``recv_into`` usually brings
    several) and their payloads copied out; a large payload gets its own buffer and the rest of
    it is read straight into place, so big arrays are never copied after the socket.
    """

    def __init__(self, sock: socket.socket, scratch: int = 256 * 1024) -> None:
        self.sock = sock
        self._scratch = bytearray(scratch)
        self._view = memoryview(self._scratch)
        self._start = 0
        self._end = 0
        self._header: dict[str, Any] | None = None
        self._payload: Any = None  # a large payload being read in place
        self._filled = 0

    def receive(self) -> list[tuple[dict[str, Any], Payload]]:
        """Do one read; return the frames it completed (maybe none).

        Raises ``EOFError`` when the peer closed the stream and ``BlockingIOError`` when a
        non-blocking socket has nothing to read.
        """
        payload = self._payload
        if payload is not None:
            count = self.sock.recv_into(memoryview(payload)[self._filled:])
            if count == 0:
                raise EOFError("the peer closed the stream in the middle of a frame")
            self._filled += count
            if self._filled < len(payload):
                return []
            done = [(self._header, payload)]
            self._header = self._payload = None
            return done  # type: ignore[return-value]
        if self._end == len(self._scratch):
            self._compact()
        count = self.sock.recv_into(self._view[self._end:])
        if count == 0:
            if self._end > self._start:
                raise EOFError("the peer closed the stream in the middle of a frame")
            raise EOFError("the peer closed the stream")
        self._end += count
        return self._parse()

    def _parse(self) -> list[tuple[dict[str, Any], Payload]]:
        frames: list[tuple[dict[str, Any], Payload]] = []
        scratch, view = self._scratch, self._view
        while True:
            start, end = self._start, self._end
            if end - start < PREFIX.size:
                break
            head_size, payload_size = PREFIX.unpack_from(scratch, start)
            body = start + PREFIX.size + head_size
            if head_size > _MAX_HEADER:
                raise RunnerError(f"malformed runner frame: a {head_size}-byte header")
            if body > end:
                self._make_room(PREFIX.size + head_size + min(payload_size, SMALL_PAYLOAD))
                break
            header = _loads(view[start + PREFIX.size:body])
            if body + payload_size <= end:
                frames.append((header, bytearray(view[body:body + payload_size])))
                self._start = body + payload_size
                continue
            if payload_size <= SMALL_PAYLOAD:
                self._make_room(PREFIX.size + head_size + payload_size)
                break
            # A large payload: give it its own buffer and read the rest of it in place. An
            # uninitialised numpy buffer, because bytearray(n) would zero it first: a third pass
            # over the memory that costs as much as the copy out of the socket.
            payload = np.empty(payload_size, dtype=np.uint8)
            have = end - body
            memoryview(payload)[:have] = view[body:end]  # type: ignore[arg-type]
            self._header, self._payload, self._filled = header, payload, have
            self._start = self._end = 0
            return frames
        if self._start == self._end:
            self._start = self._end = 0
        return frames

    def _make_room(self, frame_size: int) -> None:
        """Make sure the scratch buffer can hold a frame of ``frame_size`` from ``_start``."""
        if frame_size > len(self._scratch):
            grown = bytearray(frame_size)
            grown[:self._end - self._start] = self._view[self._start:self._end]
            self._scratch, self._view = grown, memoryview(grown)
            self._end -= self._start
            self._start = 0
        elif self._start + frame_size > len(self._scratch):
            self._compact()

    def _compact(self) -> None:
        size = self._end - self._start
        self._scratch[:size] = self._view[self._start:self._end]
        self._start, self._end = 0, size
