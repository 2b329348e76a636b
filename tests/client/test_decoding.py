"""Answers to values, by Content-Type."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dosirak.client.decoding import decode_body
from dosirak.exceptions import RemoteError
from dosirak.io.numpy import dump_npy


def test_by_content_type() -> None:
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(decode_body(dump_npy(array), "application/x-npy"), array)
    assert decode_body(b'{"a": [1, null]}', "application/json") == {"a": [1, None]}
    assert decode_body(b'{"a": 1}', "application/problem+json") == {"a": 1}
    assert decode_body("café".encode("latin-1"), "text/plain; charset=latin-1") == "café"
    frame = decode_body(b"a,b\n1,x\n", "text/csv; charset=utf-8")
    assert isinstance(frame, pd.DataFrame) and frame.to_dict("list") == {"a": [1], "b": ["x"]}
    assert decode_body(b"\x00\x01", "application/pdf") == b"\x00\x01"
    assert decode_body(b"\x00\x01", None) == b"\x00\x01"


@pytest.mark.parametrize(("body", "content_type"), [
    (b"[1, 2", "application/json"),
    (b"\x93NUMPY\x01\x00garbage", "application/x-npy"),
    (b"not a png", "image/png"),
])
def test_malformed_answers(body: bytes, content_type: str) -> None:
    with pytest.raises(RemoteError, match=f"malformed {content_type} body"):
        decode_body(body, content_type)
