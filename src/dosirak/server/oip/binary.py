"""The binary tensor data extension: raw tensor bytes after the JSON header of a body.

A body with binary tensors is the JSON header (``Inference-Header-Content-Length`` bytes) then the
tensors' bytes, back to back, in the order of the inputs (or outputs) whose ``parameters`` give a
``binary_data_size``. Fixed-size datatypes are their little-endian values in row-major order;
``BYTES`` elements are each a 4-byte little-endian length and that many bytes. Compressed bodies
(``Content-Encoding: gzip`` or ``deflate``) are inflated here under the request size limit.
"""

from __future__ import annotations

import math
import struct
import zlib
from typing import Any

import numpy as np

from dosirak.exceptions import BadInput, PayloadTooLarge, UnsupportedMediaType
from dosirak.server.oip.datatypes import BF16, BYTES, FIXED, widen_bf16

_LENGTH = struct.Struct("<I")
#: Response bodies are compressed at this zlib level when a client asks (nginx's default: most
#: of the size saved for a fraction of the CPU of level 6).
COMPRESS_LEVEL = 1
_WBITS = {"gzip": 31, "x-gzip": 31, "deflate": 15}


_NO_BINARY = memoryview(b"")


def split_body(body: bytes | bytearray, header_length: str | None) -> tuple[Any, memoryview]:
    """The JSON header and the binary section of ``body``; the section is empty when the
    request has no ``Inference-Header-Content-Length``."""
    if header_length is None:
        return body, _NO_BINARY
    if not header_length.isdigit():
        raise BadInput(f"Inference-Header-Content-Length must be a number of bytes, got "
                       f"{header_length!r}")
    length = int(header_length)
    if length > len(body):
        raise BadInput(f"Inference-Header-Content-Length says the JSON header is {length} bytes "
                       f"but the body has only {len(body)}")
    view = memoryview(body)
    return view[:length], view[length:]


def tensor_from_bytes(name: str, datatype: str, shape: tuple[int, ...],
                      raw: memoryview) -> np.ndarray:
    """The array of a binary input; its size must match its shape exactly."""
    count = math.prod(shape)
    if datatype == BYTES:
        elements = split_elements(name, raw)
        if len(elements) != count:
            raise BadInput(f"input {name!r}: its binary data holds {len(elements)} BYTES "
                           f"element(s) but its shape {list(shape)} has {count}")
        array = np.empty(count, dtype=object)
        array[:] = elements
        return array.reshape(shape)
    dtype = np.dtype("<u2") if datatype == BF16 else FIXED[datatype]
    if len(raw) != count * dtype.itemsize:
        raise BadInput(f"input {name!r}: binary_data_size is {len(raw)} bytes but shape "
                       f"{list(shape)} of {datatype} needs {count * dtype.itemsize} "
                       f"({count} element(s) of {dtype.itemsize} byte(s))")
    array = np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)
    if datatype == BF16:
        return widen_bf16(array)
    if datatype == "BOOL" and count and int(array.view(np.uint8).max()) > 1:
        raise BadInput(f"input {name!r}: BOOL data must be bytes 0 or 1")
    # A read-only view of the request body: copy, since API code may write to its input.
    return array if array.flags.writeable else array.copy()


def split_elements(name: str, raw: memoryview) -> list[bytes]:
    """The elements of a serialized BYTES tensor (a 4-byte length before each)."""
    elements = []
    offset, end = 0, len(raw)
    while offset < end:
        if offset + 4 > end:
            raise BadInput(f"input {name!r}: its BYTES data ends inside an element's 4-byte "
                           "length")
        (size,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + size > end:
            raise BadInput(f"input {name!r}: a BYTES element says it has {size} bytes but only "
                           f"{end - offset} remain")
        elements.append(bytes(raw[offset:offset + size]))
        offset += size
    return elements


def join_elements(items: Any) -> bytes:
    """Serialize BYTES elements (bytes, or text encoded as UTF-8) with their lengths."""
    parts = []
    for item in items:
        data = as_bytes(item)
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def as_bytes(item: Any) -> bytes:
    """One BYTES element from what an array may hold."""
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, (bytearray, memoryview, np.bytes_)):
        return bytes(item)
    return str(item).encode("utf-8")


def array_bytes(array: np.ndarray, datatype: str) -> bytes:
    """The binary form of an output array of ``datatype``."""
    if datatype == BYTES:
        return join_elements(array.reshape(-1))
    little = array.astype(FIXED[datatype], copy=False)
    return np.ascontiguousarray(little).tobytes()


def inflate(body: bytes | bytearray, encoding: str, limit: int) -> bytes:
    """The decompressed request body; past ``limit`` bytes it is refused (413), so that a small
    compressed body cannot make the server hold gigabytes."""
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; send the "
                                   "body plain, gzip or deflate", ["identity", "gzip", "deflate"])
    try:
        return _inflate(bytes(body), wbits, limit)
    except zlib.error:
        if encoding != "deflate":
            raise BadInput(f"the body is not valid {encoding} data") from None
    try:  # some clients send raw deflate streams, without the zlib wrapper the name promises
        return _inflate(bytes(body), -15, limit)
    except zlib.error:
        raise BadInput("the body is not valid deflate data") from None


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        inflater = zlib.decompressobj(wbits)
        part = inflater.decompress(data, limit + 1 - size)
        size += len(part)
        parts.append(part)
        if size > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"the decompressed request body is larger than this server "
                                  f"accepts ({limit} bytes; raise api_server.max_request_size "
                                  "to allow more)")
        if not inflater.eof:
            raise zlib.error("truncated stream")
        data = inflater.unused_data
        if not data or wbits != 31:  # gzip allows several members back to back
            return b"".join(parts)


def accepted_encoding(accept_encoding: str | None) -> str | None:
    """``gzip`` or ``deflate`` when the client's Accept-Encoding asks for one, else None."""
    if not accept_encoding:
        return None
    chosen = None
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        if coding not in ("gzip", "deflate"):
            continue
        quality = params.strip().removeprefix("q=").strip()
        if quality and quality.replace(".", "", 1).isdigit() and float(quality) == 0:
            continue
        if coding == "gzip":
            return "gzip"
        chosen = coding
    return chosen


def compress(data: bytes, encoding: str) -> bytes:
    """``data`` compressed as ``gzip`` or ``deflate`` (zlib-wrapped, as HTTP means it)."""
    compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, _WBITS[encoding])
    return compressor.compress(data) + compressor.flush()
