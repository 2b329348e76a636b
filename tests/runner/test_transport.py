"""The pickle-free wire format over real socketpairs: every supported type, split frames."""

from __future__ import annotations

import math
import socket
import struct
import threading
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dosirak.exceptions import InvalidArgument, RunnerError
from dosirak.runner.transport import (
    PREFIX,
    SMALL_PAYLOAD,
    Receiver,
    decode_call,
    decode_reply,
    encode_call,
    encode_error,
    encode_result,
    frame,
    send_all,
    tune,
)


def samples() -> dict[str, Any]:
    """One value of every kind the transport carries (shared with the worker tests)."""
    table = pd.DataFrame(
        {
            "int": np.arange(5, dtype=np.int64),
            "float": np.linspace(0, 1, 5, dtype=np.float32),
            "bool": [True, False, True, True, False],
            "time": pd.date_range("2024-01-01", periods=5, freq="h"),
            "text": ["a", "bb", "ccc", "é", ""],
            "mixed": ["x", None, 1, 2.5, True],
            "with_nan": ["x", math.nan, "y", None, "z"],
            "category": pd.Categorical(["u", "v", "u", "w", "v"]),
            "nullable": pd.array([1, None, 3, 4, None], dtype="Int64"),
            "string": pd.array(["p", None, "q", "r", "s"], dtype="string"),
        },
        index=pd.Index([10, 20, 30, 40, 50], name="id"),
    )
    return {
        "none": None,
        "bool": True,
        "int": 12345678901234567890,
        "huge_ints": [2**100, -(2**70), 2**64 - 1, -(2**63)],
        "negative": -3,
        "float": 1.5,
        "nan": math.nan,
        "infinity": -math.inf,
        "str": "héllo ✓ \x00",
        "bytes": b"\x00\xff" * 10,
        "list": [1, "a", None, [2.0]],
        "tuple": (1, (2, 3), [], ()),
        "dict": {"a": 1, "b": {"c": [1.0]}, "": None},
        "empties": ((), [], {}, b"", ""),
        "float32": np.arange(12, dtype=np.float32).reshape(3, 4),
        "strided": np.arange(20.0).reshape(4, 5)[:, ::2],
        "fortran": np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
        "bool_array": np.array([True, False, True]),
        "complex": np.array([1 + 2j, -0.5j], dtype=np.complex64),
        "datetime": np.array(["2024-01-01T00:00", "NaT"], dtype="datetime64[s]"),
        "timedelta": np.array([1, -2], dtype="timedelta64[ms]"),
        "unicode": np.array(["ab", "ĉ", ""]),
        "fixed_bytes": np.array([b"ab", b"c\x00d"]),
        "big_endian": np.arange(3, dtype=">i4"),
        "zero_size": np.empty((0, 3), dtype=np.float64),
        "zero_dim": np.array(3.5),
        "uint64": np.array([2**64 - 1], dtype=np.uint64),
        "float16": np.array([0.5, -1.0], dtype=np.float16),
        "np_float32": np.float32(2.5),
        "np_int64": np.int64(-7),
        "np_bool": np.bool_(True),
        "np_datetime": np.datetime64("2024-01-01T12:00"),
        "object_scalars": np.array(["a", None, 1, 2.5], dtype=object),
        "object_specials": np.array([math.nan, np.float64(1.5), 2**80, "z"], dtype=object),
        "frame": table,
        "series": table["float"],
        "text_series": table["text"],
        "plain_series": pd.Series([1.0, 2.0], name="x"),
        "index": pd.Index(["a", "b"], name="letters"),
        "range_index": pd.RangeIndex(2, 10, 2, name="even"),
        "empty_frame": pd.DataFrame(),
        "duplicate_columns": pd.DataFrame([[1, 2.0]], columns=["a", "a"]),
        "int_columns": pd.DataFrame(np.eye(2)),
        "nested": {"x": [np.ones(2), (pd.Series([1.0]), np.zeros(1, dtype=np.uint8))]},
    }


def assert_same(got: Any, want: Any) -> None:
    """Equal in type, dtype, shape and every bit (NaN included)."""
    assert type(got) is type(want), (type(got), type(want))
    if isinstance(want, pd.DataFrame):
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    elif isinstance(want, pd.Series):
        pd.testing.assert_series_equal(got, want, check_exact=True)
    elif isinstance(want, pd.Index):
        pd.testing.assert_index_equal(got, want, exact=True)
    elif isinstance(want, (np.ndarray, np.generic)):
        assert got.dtype == want.dtype and got.shape == want.shape
        if want.dtype == object:
            assert len(got.ravel()) == len(want.ravel())
            for got_item, want_item in zip(got.ravel(), want.ravel(), strict=True):
                assert_same(got_item, want_item)
        else:
            assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(want).tobytes()
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for got_item, want_item in zip(got, want, strict=True):
            assert_same(got_item, want_item)
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for key in want:
            assert_same(got[key], want[key])
    elif isinstance(want, float) and math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == want


def roundtrip(value: Any) -> Any:
    """Send ``value`` as a result frame across a real socketpair and decode it."""
    left, right = socket.socketpair()
    with left, right:
        tune(left)
        tune(right)
        parts = encode_result(value)
        writer = threading.Thread(target=send_all, args=(left, parts))
        writer.start()
        receiver = Receiver(right)
        frames: list[Any] = []
        while not frames:
            frames = receiver.receive()
        writer.join()
        assert len(frames) == 1
        return decode_reply(*frames[0])


@pytest.mark.parametrize("name", list(samples()))
def test_every_supported_type_round_trips(name: str) -> None:
    value = samples()[name]
    assert_same(roundtrip(value), value)


def test_received_arrays_are_writable_views_of_one_buffer() -> None:
    got = roundtrip([np.arange(4.0), np.arange(3, dtype=np.int8)])
    assert all(array.flags.writeable for array in got)
    # Both arrays point into the frame's single payload buffer: no copy per array.
    owners = [buffer_owner(array) for array in got]
    assert type(owners[0]) is bytearray and owners[0] is owners[1]


def buffer_owner(array: np.ndarray) -> Any:
    owner: Any = array
    while isinstance(owner, np.ndarray) and owner.base is not None:
        owner = owner.base
    return owner.obj if isinstance(owner, memoryview) else owner


def test_a_frame_of_more_pieces_than_one_sendmsg_takes_crosses_intact() -> None:
    arrays = [np.arange(k, dtype=np.int32) for k in range(1, 700)]  # 1,400 buffers and pads
    assert_same(roundtrip(arrays), arrays)


def test_four_megabytes_of_float32_cross_intact() -> None:
    big = np.random.default_rng(0).random(1 << 20, dtype=np.float32)
    got = roundtrip(big)
    assert got.dtype == np.float32 and np.array_equal(got, big)
    owner = buffer_owner(got)  # read in place into one buffer, never copied after the socket
    assert type(owner) is np.ndarray and owner.dtype == np.uint8 and owner.nbytes >= big.nbytes


array_dtypes = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(endianness="?"),
    hnp.unsigned_integer_dtypes(endianness="?"),
    hnp.floating_dtypes(endianness="?"),
    hnp.complex_number_dtypes(endianness="?"),
    hnp.datetime64_dtypes(endianness="?"),
    hnp.timedelta64_dtypes(endianness="?"),
    hnp.unicode_string_dtypes(endianness="?", max_len=4),
    hnp.byte_string_dtypes(max_len=4),
)


@settings(max_examples=150, deadline=None)
@given(
    array=hnp.arrays(array_dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0,
                                                    max_side=5)),
    step=st.integers(1, 2),
    transpose=st.booleans(),
)
def test_arrays_of_any_plain_dtype_and_layout_round_trip(array: np.ndarray, step: int,
                                                         transpose: bool) -> None:
    if array.ndim:
        array = array[::step]
    if transpose:
        array = array.T
    got = roundtrip({"x": array, "pair": (array, 1)})
    assert_same(got, {"x": array, "pair": (array, 1)})


def test_torch_tensors_round_trip() -> None:
    import torch
    tensors = [
        torch.arange(12, dtype=torch.float32).reshape(3, 4),
        torch.arange(12, dtype=torch.float32).reshape(3, 4).T,  # not contiguous
        torch.tensor([1.5, -2.0], dtype=torch.bfloat16),  # no numpy equivalent
        torch.tensor([True, False]),
        torch.tensor(7, dtype=torch.int64),
        torch.empty(0, 2, dtype=torch.float16),
        torch.ones(2, requires_grad=True),
    ]
    got = roundtrip(tensors)
    for received, sent in zip(got, tensors, strict=True):
        assert isinstance(received, torch.Tensor)
        assert received.dtype == sent.dtype and received.shape == sent.shape
        assert torch.equal(received, sent.detach())


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        (object(), "builtins.object"),
        ({1: "a"}, "non-str key 1"),
        ({"a", "b"}, "builtins.set"),
        (np.array([object()], dtype=object), "inside an object array"),
        (np.zeros(2, dtype=[("a", "i4"), ("b", "f8")]), "of dtype"),
        (pd.DataFrame({"a": [1]}).set_index(pd.MultiIndex.from_tuples([(1, 2)])), "reset_index"),
        (pd.Series(pd.date_range("2024", periods=2, tz="UTC")), "pandas dtype datetime64[ns, UTC]"),
    ],
)
def test_unsupported_values_are_refused_with_a_clear_error(value: Any, detail: str) -> None:
    with pytest.raises(InvalidArgument, match="without pickle") as caught:
        encode_call("predict", (value,), {})
    assert detail in str(caught.value)
    assert "convert it to a numpy array, a DataFrame, or JSON-like values" in str(caught.value)


def test_a_call_frame_carries_method_args_and_kwargs() -> None:
    left, right = socket.socketpair()
    with left, right:
        send_all(left, encode_call("predict", (np.arange(3), "x"), {"threshold": 0.5, "t": (1,)}))
        (header, payload), = Receiver(right).receive()
    method, args, kwargs = decode_call(header, payload)
    assert method == "predict"
    assert_same(args, [np.arange(3), "x"])
    assert_same(kwargs, {"threshold": 0.5, "t": (1,)})


def test_an_error_frame_becomes_a_runner_error_with_type_and_message() -> None:
    try:
        raise ValueError("bad shape (3,)")
    except ValueError as error:
        parts = encode_error(error)
    left, right = socket.socketpair()
    with left, right:
        send_all(left, parts)
        (header, payload), = Receiver(right).receive()
    with pytest.raises(RunnerError) as caught:
        decode_reply(header, payload)
    assert caught.value.error_type == "ValueError"
    assert str(caught.value) == "ValueError: bad shape (3,)"
    assert "raise ValueError" in caught.value.remote_traceback


@pytest.mark.parametrize("chunk", [1, 7, 4096, 100_000])
def test_frames_split_anywhere_are_reassembled(chunk: int) -> None:
    small = {"a": np.arange(10), "s": "x" * 300}
    large = np.arange(SMALL_PAYLOAD, dtype=np.float32)  # 4x the small limit: read in place
    wire = b"".join(bytes(memoryview(part).cast("B")) for value in (small, large, small)
                    for part in encode_result(value))
    left, right = socket.socketpair()
    with left, right:
        right.setblocking(False)
        receiver = Receiver(right, scratch=1024)  # tiny scratch: forces compaction and growth
        frames: list[Any] = []
        for start in range(0, len(wire), chunk):
            left.sendall(wire[start:start + chunk])
            while True:
                try:
                    frames += receiver.receive()
                except BlockingIOError:
                    break
    assert len(frames) == 3
    for (header, payload), want in zip(frames, (small, large, small), strict=True):
        assert_same(decode_reply(header, payload), want)


def test_end_of_stream_is_reported() -> None:
    left, right = socket.socketpair()
    with right:
        left.sendall(encode_result(1)[0][:5])
        left.close()
        receiver = Receiver(right)
        assert receiver.receive() == []
        with pytest.raises(EOFError, match="middle of a frame"):
            receiver.receive()


def forged(header: dict[str, Any], payload: bytes = b"") -> tuple[dict[str, Any], bytearray]:
    """A frame as a broken or hostile peer could send it, received for real."""
    left, right = socket.socketpair()
    with left, right:
        parts = frame(header)
        head = bytes(parts[0])
        head_size = struct.unpack_from("<I", head)[0]
        left.sendall(PREFIX.pack(head_size, len(payload)) + head[PREFIX.size:] + payload)
        (received,) = Receiver(right).receive()
    return received


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"~": "a", "d": "|O", "s": [1], "o": 0, "n": 8}, "dtype '|O' is not allowed"),
        ({"~": "a", "d": "<f8", "s": [4], "o": 0, "n": 32}, "outside the payload"),
        ({"~": "a", "d": "<f8", "s": [2], "o": 0, "n": 8}, "does not match its shape"),
        ({"~": "a", "d": "<f8", "s": [1], "o": -8, "n": 8}, "outside the payload"),
        ({"~": "a", "d": [["a", "<i4"]], "s": [1], "o": 0, "n": 4}, "is not allowed"),
        ({"~": "zz"}, "unknown value kind"),
    ],
)
def test_malformed_frames_are_refused(node: dict[str, Any], message: str) -> None:
    header, payload = forged({"r": node}, bytes(8))
    with pytest.raises(RunnerError, match=message):
        decode_reply(header, payload)


def test_a_header_that_is_not_json_is_refused() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(PREFIX.pack(3, 0) + b"{x}")
        with pytest.raises(RunnerError, match="not JSON"):
            Receiver(right).receive()
