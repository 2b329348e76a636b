"""The tensor datatypes of the Open Inference Protocol and their numpy counterparts.

    >>> numpy_dtype("FP32")
    dtype('float32')
    >>> datatype_of(np.dtype("int64"))
    'INT64'

``BYTES`` tensors hold byte strings (numpy ``object`` arrays of ``bytes`` inside the codec).
``BF16`` has no numpy type: it is accepted in binary form only (as the protocol allows JSON
for it nowhere) and widened to ``float32``. Binary data is little-endian, as the binary tensor
extension says.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from dosirak.exceptions import BadInput

BYTES = "BYTES"
BF16 = "BF16"
#: Fixed-size datatypes by name: their little-endian numpy dtype.
FIXED: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
#: Every datatype a request may name.
DATATYPES = (*FIXED, BF16, BYTES)
_DATATYPE_SET = frozenset(DATATYPES)
_BY_DTYPE = {dtype.newbyteorder("="): name for name, dtype in FIXED.items()}
#: The datatype a descriptor without a dtype states: JSON numbers are doubles.
DEFAULT_DATATYPE = "FP64"


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype of a fixed-size datatype (``float32`` for ``BF16``)."""
    if datatype == BF16:
        return np.dtype("<f4")
    return FIXED[datatype]


def datatype_of(dtype: Any) -> str | None:
    """The datatype of numpy ``dtype``; None when the protocol has no such type (complex,
    dates). Text and bytes (and objects, which hold them) are ``BYTES``."""
    try:
        return _KNOWN[dtype]  # every response asks: the answer for a dtype is kept
    except (KeyError, TypeError):
        pass
    found = np.dtype(dtype)
    datatype = BYTES if found.kind in "USO" else _BY_DTYPE.get(found.newbyteorder("="))
    if len(_KNOWN) < 256:
        with contextlib.suppress(TypeError):
            _KNOWN[dtype] = datatype
    return datatype


_KNOWN: dict[Any, str | None] = {}


def declared_datatype(dtype: Any) -> str:
    """The datatype metadata states for a descriptor's dtype (``None``: ``FP64``)."""
    if dtype is None:
        return DEFAULT_DATATYPE
    try:
        return datatype_of(dtype) or DEFAULT_DATATYPE
    except TypeError:  # a pandas extension dtype such as "category"
        return BYTES if str(dtype) in ("string", "category") else DEFAULT_DATATYPE


def check_datatype(name: str, datatype: Any, binary: bool) -> str:
    """``datatype`` if the protocol knows it (and can carry it the way it was sent)."""
    if datatype not in _DATATYPE_SET:
        raise BadInput(f"input {name!r}: unknown datatype {datatype!r}; use one of "
                       f"{', '.join(DATATYPES)}")
    if datatype == BF16 and not binary:
        raise BadInput(f"input {name!r}: BF16 tensors are sent in binary only (JSON has no "
                       "bfloat16 numbers); send it with binary_data_size, or as FP32")
    return datatype


def widen_bf16(raw: np.ndarray) -> np.ndarray:
    """float32 values of little-endian bfloat16 ``raw`` (uint16): its upper half, zero-padded."""
    return (raw.astype("<u4") << 16).view("<f4")
