"""Merging and splitting call payloads: split(concat(parts)) gives every part back exactly."""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis.extra import pandas as hpd

from dosirak.exceptions import InvalidArgument
from dosirak.runner import containers

DTYPES = ["int8", "int64", "uint16", "float32", "float64", "complex64", "bool", "U3", "M8[s]"]


def same_array(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-for-bit equality (NaN payloads included), plus dtype and shape."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@st.composite
def array_parts(draw: st.DrawFn) -> tuple[list[np.ndarray], int]:
    """1-5 arrays with the same dtype and shape except along a batch dim of 0 or 1."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    dim = draw(st.sampled_from([0, 1, -1]))
    ndim = draw(st.integers(min_value=1 if dim != 1 else 2, max_value=4))
    shape = draw(hnp.array_shapes(min_dims=ndim, max_dims=ndim, min_side=0, max_side=4))
    parts = []
    for _ in range(draw(st.integers(1, 5))):
        part_shape = list(shape)
        part_shape[dim] = draw(st.integers(0, 6))
        parts.append(draw(hnp.arrays(dtype, tuple(part_shape))))
    return parts, dim


@settings(max_examples=300, deadline=None)
@given(array_parts())
def test_numpy_split_of_concat_gives_each_part_back(case: tuple[list[np.ndarray], int]) -> None:
    parts, dim = case
    merged, sizes = containers.concat(parts, dim)
    assert sizes == [part.shape[dim] for part in parts]
    assert merged.shape[dim] == sum(sizes)
    back = containers.split(merged, sizes, dim)
    assert len(back) == len(parts)
    for part, got in zip(parts, back, strict=True):
        assert same_array(part, got)
    # Slicing the merged value by rows gives the same parts.
    start = 0
    for part, size in zip(parts, sizes, strict=True):
        assert same_array(part, containers.take(merged, start, start + size, dim))
        start += size


def test_numpy_split_returns_views_and_one_part_is_not_copied() -> None:
    array = np.arange(12).reshape(6, 2)
    merged, _sizes = containers.concat([array], 0)
    assert merged is array
    parts = containers.split(array, [2, 4], 0)
    assert all(np.shares_memory(part, array) for part in parts)
    assert np.shares_memory(containers.take(array, 1, 3, 0), array)


def data_frames_with_index() -> st.SearchStrategy[pd.DataFrame]:
    columns = [hpd.column("a", dtype="int64"), hpd.column("b", dtype="float64"),
               hpd.column("c", elements=st.text(max_size=3))]
    default = hpd.data_frames(columns, index=hpd.range_indexes(max_size=6))
    labelled = hpd.data_frames(columns, index=hpd.indexes(dtype="int64", max_size=6))
    return st.one_of(default, labelled)


@settings(max_examples=50, deadline=None)
@given(st.lists(data_frames_with_index(), min_size=1, max_size=4))
def test_pandas_frames_split_of_concat_gives_each_part_back(parts: list[pd.DataFrame]) -> None:
    merged, sizes = containers.concat(parts, 0)
    assert list(merged.index) == list(range(sum(sizes)))  # positional, no duplicate labels
    for part, got in zip(parts, containers.split(merged, sizes, 0), strict=True):
        got = containers.relabel(got, containers.row_labels(part))
        pd.testing.assert_frame_equal(got, part, check_exact=True)


@settings(max_examples=100, deadline=None)
@given(st.lists(hpd.series(dtype="float32", index=hpd.indexes(dtype="int64", max_size=5),
                           name=st.just("score")), min_size=1, max_size=4))
def test_pandas_series_split_of_concat_gives_each_part_back(parts: list[pd.Series]) -> None:
    merged, sizes = containers.concat(parts, 0)
    for part, got in zip(parts, containers.split(merged, sizes, 0), strict=True):
        got = containers.relabel(got, containers.row_labels(part))
        pd.testing.assert_series_equal(got, part, check_exact=True)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.one_of(st.integers(), st.text(max_size=3), st.none(),
                                   st.lists(st.floats(allow_nan=False), max_size=2))),
                min_size=1, max_size=5))
def test_lists_split_of_concat_gives_each_part_back(parts: list[list[object]]) -> None:
    merged, sizes = containers.concat(parts, 0)
    assert merged == [item for part in parts for item in part]
    assert containers.split(merged, sizes, 0) == parts


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=4), st.sampled_from([0, 1]))
def test_nested_tuples_and_dicts_split_of_concat(row_counts: list[int], dim: int) -> None:
    def payload(n: int, seed: int) -> tuple[object, ...]:
        features = np.full((n, 3) if dim == 0 else (3, n), seed, dtype=np.float32)
        extra = {"ids": np.arange(n) + seed} if dim == 0 else {"ids": np.ones((2, n))}
        return (features, extra)

    parts = [payload(n, seed) for seed, n in enumerate(row_counts)]
    merged, sizes = containers.concat(parts, dim)
    assert sizes == row_counts
    for part, got in zip(parts, containers.split(merged, sizes, dim), strict=True):
        assert isinstance(got, tuple) and set(got[1]) == {"ids"}
        assert same_array(got[0], part[0])
        assert same_array(got[1]["ids"], part[1]["ids"])


def test_namedtuple_keeps_its_type() -> None:
    Pair = namedtuple("Pair", "x y")
    parts = [Pair(np.zeros(2), [1, 2]), Pair(np.ones(1), [3])]
    merged, sizes = containers.concat(parts, 0)
    assert isinstance(merged, Pair) and merged.y == [1, 2, 3]
    assert containers.split(merged, sizes, 0)[1] == Pair(np.ones(1), [3])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=4), st.sampled_from([0, 1]))
def test_torch_split_of_concat_gives_each_part_back(row_counts: list[int], dim: int) -> None:
    parts = []
    for seed, n in enumerate(row_counts):
        shape = (n, 2) if dim == 0 else (2, n)
        parts.append(torch.full(shape, float(seed)) + torch.arange(2 * n).reshape(shape))
    merged, sizes = containers.concat(parts, dim)
    assert sizes == row_counts
    for part, got in zip(parts, containers.split(merged, sizes, dim), strict=True):
        assert torch.equal(part, got)
    assert torch.equal(containers.take(merged, 0, row_counts[0], dim), parts[0])


def test_describe_key_separates_what_cannot_merge() -> None:
    def key(value: object) -> object:
        return containers.describe(value, 0)[1]

    assert key(np.zeros((2, 3))) == key(np.ones((5, 3)))
    assert key(np.zeros((2, 3))) != key(np.zeros((2, 4)))
    assert key(np.zeros((2, 3), np.float32)) != key(np.zeros((2, 3), np.float64))
    assert key(pd.DataFrame({"a": [1]})) == key(pd.DataFrame({"a": [2, 3]}))
    assert key(pd.DataFrame({"a": [1]})) != key(pd.DataFrame({"b": [1]}))
    assert key(pd.DataFrame({"a": [1]})) != key(pd.DataFrame({"a": [1.0]}))
    assert key(([1], {"k": [2]})) != key(([1], {"j": [2]}))
    assert containers.describe_call((np.zeros((4, 2)),), {"mask": [1, 2, 3, 4]}, 0)[0] == 4


def test_row_labels_and_relabel_round_trip_for_an_index_preserving_model() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]}, index=[10, 20, 30])
    other = pd.DataFrame({"x": [4.0]})
    merged, sizes = containers.concat([frame, other], 0)
    output = merged * 2  # keeps the merged index, like most pandas models
    first, second = containers.split(output, sizes, 0)
    pd.testing.assert_frame_equal(containers.relabel(first, containers.row_labels(frame)),
                                  frame * 2)
    pd.testing.assert_frame_equal(containers.relabel(second, containers.row_labels(other)),
                                  other * 2)
    assert containers.row_labels(other) is None


def test_split_keeps_an_index_the_model_chose() -> None:
    output = pd.Series([1, 2, 3], index=["a", "b", "c"])
    _first, second = containers.split(output, [1, 2], 0)
    assert list(second.index) == ["b", "c"]


@pytest.mark.parametrize(
    ("value", "dim", "message"),
    [
        (3.5, 0, "float, which cannot be batched"),
        ("text", 0, "str, which cannot be batched"),
        (np.float64(1.0), 0, "cannot be batched"),
        (np.array(1.0), 0, "scalar (0-d array)"),
        (np.zeros(3), 1, "batch_dim 1 is out of range"),
        (pd.DataFrame({"a": [1]}), 1, "batches along rows only"),
        ([1, 2], 1, "batches along rows only"),
        ((np.zeros(2), np.zeros(3)), 0, "value[0] has 2 rows along batch_dim 0 but value[1] has 3"),
        ((), 0, "nothing to batch"),
        ({"a": None}, 0, "value['a'] is a NoneType"),
    ],
)
def test_describe_rejects_what_cannot_batch(value: object, dim: int, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        containers.describe(value, dim)


def test_describe_call_names_the_argument_at_fault() -> None:
    with pytest.raises(InvalidArgument, match=r"kwargs\['threshold'\] is a float"):
        containers.describe_call((np.zeros(2),), {"threshold": 0.5}, 0)
    with pytest.raises(InvalidArgument, match="keyword arguments have 3"):
        containers.describe_call((np.zeros(2),), {"mask": [1, 2, 3]}, 0)
    with pytest.raises(InvalidArgument, match="needs at least one argument"):
        containers.describe_call((), {}, 0)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([np.zeros((1, 2)), np.zeros((1, 3))], "must agree on every dimension"),
        ([np.zeros(1, np.float32), np.zeros(1, np.float64)], "dtype float64, call 0 passes"),
        ([np.zeros(1), [1.0]], "call 0 passes a ndarray, call 1 a list"),
        ([(np.zeros(1),), (np.zeros(1), np.zeros(1))], "call 0 passes 1 items, call 1 passes 2"),
        ([{"a": [1]}, {"b": [1]}], "must pass the same keys"),
        ([pd.DataFrame({"a": [1]}), pd.DataFrame({"b": [1]})], "same columns and dtypes"),
        ([1, 2], "int, which cannot be batched"),
    ],
)
def test_concat_rejects_values_that_do_not_merge(values: list[object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        containers.concat(values, 0)


def test_split_rejects_an_output_with_the_wrong_row_count() -> None:
    with pytest.raises(InvalidArgument, match="output has 3 rows along batch_dim 0 but the batch "
                                              "had 4 rows"):
        containers.split(np.zeros(3), [2, 2], 0)
