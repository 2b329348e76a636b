"""Issue 17, bug 4: ``NumpyNdarray(dtype="uint8", enforce_dtype=True)`` takes in-range JSON
integers (JSON integers parse as int64, which is not the same kind as an unsigned dtype)."""

from __future__ import annotations

import numpy as np
import pytest

import dosirak as bentoml
from dosirak.exceptions import BadInput
from dosirak.io.numpy import NumpyNdarray


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "uint64"])
def test_unsigned_dtypes_take_in_range_json_integers(dtype: str) -> None:
    descriptor = NumpyNdarray(dtype=dtype, enforce_dtype=True)
    array = descriptor.parse(b"[[0, 1, 255]]", "application/json", {})
    assert array.dtype == np.dtype(dtype)
    assert array.tolist() == [[0, 1, 255]]


@pytest.mark.parametrize("body", [b"[-1]", b"[256]"])
def test_out_of_range_integers_are_still_refused(body: bytes) -> None:
    with pytest.raises(BadInput, match="uint8"):
        NumpyNdarray(dtype="uint8", enforce_dtype=True).parse(body, "application/json", {})


def test_floats_are_not_silently_truncated_into_unsigned() -> None:
    with pytest.raises(BadInput, match="uint8"):
        bentoml.io.NumpyNdarray(dtype="uint8", enforce_dtype=True).parse(
            b"[1.5]", "application/json", {})
