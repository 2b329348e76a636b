"""Merge the payloads of several calls into one batch, and split the batch's output back.

A payload is what one call passes or returns: a numpy array, a pandas DataFrame or Series, a
list, a torch tensor, or a tuple or dict nesting these. Each holds *rows* along a batch dimension
(``dim``); merging stacks the rows of every call along it, splitting cuts the model's output back
into one part per call.

    >>> merged, sizes = concat([np.ones((2, 3)), np.zeros((1, 3))], 0)
    >>> merged.shape, sizes
    ((3, 3), [2, 1])
    >>> [part.shape for part in split(merged, sizes, 0)]
    [(2, 3), (1, 3)]

Copies are kept to the minimum: merging copies each row once (none when there is one payload),
splitting and slicing return views for arrays and tensors. Nothing is pickled.

pandas objects batch along rows only. The merged frame gets a fresh positional index (calls
usually number their rows 0..n-1 each, and a model should not see duplicate labels); on the way
back, an output part whose index is still those positions gets the call's own labels again
(``relabel``), so an index-preserving model answers each call with that call's labels.

torch is never imported here: a value is a tensor only if torch is already loaded.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from dosirak.exceptions import InvalidArgument

_BATCHABLE = (
    "batchable values are numpy arrays, pandas DataFrames and Series, lists, torch tensors, "
    "or tuples and dicts of these"
)


def describe(value: Any, dim: int, where: str = "value") -> tuple[int, Hashable]:
    """Rows of ``value`` along ``dim``, and a key: payloads merge only when their keys are equal.

    The key holds everything but the row count that must agree for a merge to give the same
    answer as separate calls: the type, the other dimensions, the dtypes, the columns.
    """
    rows, key = _describe(value, dim, where)
    if rows is None:
        raise InvalidArgument(f"{where} holds nothing to batch (an empty tuple or dict); "
                              f"{_BATCHABLE}")
    return rows, key


def describe_call(args: tuple[Any, ...], kwargs: dict[str, Any], dim: int) -> tuple[int, Hashable]:
    """``describe`` for the arguments of one call, with errors naming the argument at fault."""
    if not kwargs and len(args) == 1 and type(args[0]) is np.ndarray:  # the common case, faster
        shape = args[0].shape
        if -len(shape) <= dim < len(shape):
            axis = dim % len(shape)
            leaf = (np.ndarray, shape[:axis] + shape[axis + 1:], args[0].dtype)
            return shape[axis], ((tuple, (leaf,)), _NO_KWARGS_KEY)
    rows, args_key = _describe(args, dim, "args")
    kwargs_rows, kwargs_key = _describe(kwargs, dim, "kwargs")
    if rows is None:
        rows = kwargs_rows
    elif kwargs_rows is not None and kwargs_rows != rows:
        raise InvalidArgument(f"positional arguments have {rows} rows along batch_dim {dim} but "
                              f"keyword arguments have {kwargs_rows}; every batched argument "
                              "must hold the same number of rows")
    if rows is None:
        raise InvalidArgument(f"a batchable method needs at least one argument to batch; "
                              f"{_BATCHABLE}")
    return rows, (args_key, kwargs_key)


_NO_KWARGS_KEY = ((dict, ()), ())  # what _describe gives for {}


def rows(value: Any, dim: int) -> int:
    """Number of rows of ``value`` along ``dim`` (every leaf of a tuple or dict must agree)."""
    return describe(value, dim)[0]


def concat(values: Sequence[Any], dim: int) -> tuple[Any, list[int]]:
    """Merge payloads of the same structure along ``dim``; returns (merged, rows of each).

    One payload is returned as is (pandas objects get a positional index, sharing the data).
    """
    sizes = [rows(value, dim) for value in values]
    return merge(values, dim), sizes


def merge(values: Sequence[Any], dim: int) -> Any:
    """``concat`` without counting rows, for callers that know the sizes already."""
    if not values:
        raise InvalidArgument("nothing to merge: at least one value is needed")
    return _concat(list(values), dim, "value")


def split(value: Any, sizes: Sequence[int], dim: int) -> list[Any]:
    """Cut ``value`` along ``dim`` into consecutive parts of ``sizes`` rows (views when possible).

    A pandas part whose index is still the merged positions gets the index 0..n-1, the index a
    call alone would have got from an index-preserving model; ``relabel`` can then restore the
    call's own labels.
    """
    check_rows(value, sum(sizes), dim)
    bounds = [0]
    for size in sizes:
        bounds.append(bounds[-1] + size)
    return _split(value, bounds, dim)


def check_rows(output: Any, expected: int, dim: int) -> None:
    """Raise unless a batch's ``output`` holds ``expected`` rows along ``dim``."""
    try:
        total = rows(output, dim)
    except InvalidArgument as error:
        raise InvalidArgument(f"the batch output cannot be split back into calls: {error}"
                              ) from None
    if total != expected:
        raise InvalidArgument(f"the batch output has {total} rows along batch_dim {dim} but the "
                              f"batch had {expected} rows; a batchable method must return one "
                              "output row per input row (check the output batch_dim)")


def take(value: Any, start: int, stop: int, dim: int) -> Any:
    """Rows ``start:stop`` of ``value`` along ``dim`` (a view for arrays and tensors)."""
    return _take(value, start, stop, dim)


def row_labels(value: Any) -> Any | None:
    """The index of the first pandas object in ``value``, or None when it is the default 0..n-1.

    These are the labels ``relabel`` gives back to the call's output.
    """
    pandas = sys.modules.get("pandas")
    if pandas is None:
        return None
    found = _first_pandas(value, pandas)
    if found is None or _is_positional(found.index, 0, len(found), pandas):
        return None
    return found.index


def relabel(value: Any, labels: Any | None) -> Any:
    """Give ``labels`` to every pandas object in ``value`` still indexed 0..n-1 with n == len."""
    pandas = sys.modules.get("pandas")
    if labels is None or pandas is None:
        return value
    return _relabel(value, labels, pandas)


# -- one function per operation, dispatching on the type of the value ----------------------------


def _describe(value: Any, dim: int, where: Any) -> tuple[int | None, Hashable]:
    # ``where`` is the value's path for error messages, formatted only on error (see _name):
    # this runs for every call submitted, so it must stay cheap.
    kind = type(value)
    if kind is np.ndarray or isinstance(value, np.ndarray):
        axis = _axis(value.ndim, dim, where)
        shape = value.shape
        return shape[axis], (np.ndarray, shape[:axis] + shape[axis + 1:], value.dtype)
    if kind is list:
        _rows_only(dim, where, "a list")
        return len(value), list
    if isinstance(value, tuple):
        return _describe_items(enumerate(value), dim, where, kind)
    if isinstance(value, dict):
        count, key = _describe_items(value.items(), dim, where, dict)
        return count, (key, tuple(value))
    pandas = sys.modules.get("pandas")
    if pandas is not None:
        if isinstance(value, pandas.DataFrame):
            _rows_only(dim, where, "a pandas DataFrame")
            return len(value), (pandas.DataFrame, tuple(zip(value.columns, value.dtypes,
                                                            strict=True)))
        if isinstance(value, pandas.Series):
            _rows_only(dim, where, "a pandas Series")
            return len(value), (pandas.Series, value.dtype, value.name)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        axis = _axis(value.dim(), dim, where)
        shape = tuple(value.shape)
        return shape[axis], (torch.Tensor, shape[:axis] + shape[axis + 1:], value.dtype,
                             value.device)
    raise InvalidArgument(f"{_name(where)} is a {kind.__name__}, which cannot be batched: "
                          f"{_BATCHABLE}. Send it with one item per row, or declare the method "
                          "batchable=False")


def _describe_items(items: Any, dim: int, where: Any, kind: type) -> tuple[int | None, Hashable]:
    count: int | None = None
    keys = []
    first: Any = None
    for name, item in items:
        item_rows, key = _describe(item, dim, (where, name))
        keys.append(key)
        if item_rows is None:
            continue
        if count is None:
            count, first = item_rows, name
        elif item_rows != count:
            raise InvalidArgument(f"{_name((where, first))} has {count} rows along batch_dim "
                                  f"{dim} but {_name((where, name))} has {item_rows}; every "
                                  "batched value of a call must hold the same number of rows")
    return count, (kind, tuple(keys))


def _name(where: Any) -> str:
    """``("args", 0)`` -> ``args[0]``; ``(("kwargs", "x"), 1)`` -> ``kwargs['x'][1]``."""
    if isinstance(where, str):
        return where
    parent, key = where
    return f"{_name(parent)}[{key!r}]"


def _concat(values: list[Any], dim: int, where: str) -> Any:
    first = values[0]
    kind = type(first)
    for index, value in enumerate(values):
        if type(value) is not kind:
            raise InvalidArgument(f"cannot merge {where}: call 0 passes a {kind.__name__}, call "
                                  f"{index} a {type(value).__name__}; batched calls must pass "
                                  "the same types")
    if isinstance(first, np.ndarray):
        axis = _axis(first.ndim, dim, where)
        _same_dtype(values, where)
        if len(values) == 1:
            return first
        try:
            return np.concatenate(values, axis=axis)
        except ValueError as error:
            raise InvalidArgument(f"cannot merge {where}: {error}; batched arrays must agree on "
                                  "every dimension but the batch one") from None
    if kind is list:
        if len(values) == 1:
            return first
        merged: list[Any] = []
        for value in values:
            merged.extend(value)
        return merged
    if isinstance(first, tuple):
        length = len(first)
        for index, value in enumerate(values):
            if len(value) != length:
                raise InvalidArgument(f"cannot merge {where}: call 0 passes {length} items, call "
                                      f"{index} passes {len(value)}; batched calls must pass the "
                                      "same structure")
        items = [_concat([value[i] for value in values], dim, f"{where}[{i}]")
                 for i in range(length)]
        return _rebuild_tuple(first, items)
    if isinstance(first, dict):
        for index, value in enumerate(values):
            if value.keys() != first.keys():
                raise InvalidArgument(f"cannot merge {where}: call 0 passes keys {sorted(first)}, "
                                      f"call {index} passes {sorted(value)}; batched calls must "
                                      "pass the same keys")
        return {key: _concat([value[key] for value in values], dim, f"{where}[{key!r}]")
                for key in first}
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(first, (pandas.DataFrame, pandas.Series)):
        return _concat_pandas(values, dim, where, pandas)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(first, torch.Tensor):
        _axis(first.dim(), dim, where)
        _same_dtype(values, where)
        if len(values) == 1:
            return first
        try:
            return torch.cat(values, dim=dim)
        except RuntimeError as error:
            raise InvalidArgument(f"cannot merge {where}: {error}") from None
    _describe(first, dim, where)  # raises the "cannot be batched" error
    raise AssertionError("unreachable")


def _concat_pandas(values: list[Any], dim: int, where: str, pandas: Any) -> Any:
    _rows_only(dim, where, "a pandas object")
    first = values[0]
    if isinstance(first, pandas.DataFrame):
        for index, value in enumerate(values):
            if not value.columns.equals(first.columns) or not value.dtypes.equals(first.dtypes):
                raise InvalidArgument(f"cannot merge {where}: the DataFrame of call {index} has "
                                      "other columns or dtypes than call 0's; batched frames "
                                      "must have the same columns and dtypes")
    else:
        for index, value in enumerate(values):
            if value.dtype != first.dtype:
                raise InvalidArgument(f"cannot merge {where}: the Series of call {index} has dtype "
                                      f"{value.dtype}, call 0's {first.dtype}")
    if len(values) == 1:
        return _positional(first, pandas)
    # Empty parts add no rows, and pandas warns about their dtypes: leave them out.
    non_empty = [value for value in values if len(value)] or values[:1]
    if len(non_empty) == 1:
        return _positional(non_empty[0], pandas)
    return pandas.concat(non_empty, axis=0, ignore_index=True)


def _split(value: Any, bounds: list[int], dim: int) -> list[Any]:
    if isinstance(value, np.ndarray):
        axis = dim % value.ndim
        if axis == 0:  # plain slices: np.split swaps axes twice per part, 5x slower
            return [value[start:stop] for start, stop in itertools.pairwise(bounds)]
        return np.split(value, bounds[1:-1], axis=axis)
    if type(value) is list:
        return [value[start:stop] for start, stop in itertools.pairwise(bounds)]
    if isinstance(value, tuple):
        columns = [_split(item, bounds, dim) for item in value]
        return [_rebuild_tuple(value, [column[i] for column in columns])
                for i in range(len(bounds) - 1)]
    if isinstance(value, dict):
        columns_by_key = {key: _split(item, bounds, dim) for key, item in value.items()}
        return [{key: column[i] for key, column in columns_by_key.items()}
                for i in range(len(bounds) - 1)]
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, (pandas.DataFrame, pandas.Series)):
        parts = []
        for start, stop in itertools.pairwise(bounds):
            part = value.iloc[start:stop]
            if _is_positional(part.index, start, stop, pandas):
                part = part.copy(deep=False)
                part.index = pandas.RangeIndex(stop - start)
            parts.append(part)
        return parts
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        sizes = [stop - start for start, stop in itertools.pairwise(bounds)]
        return list(torch.split(value, sizes, dim=dim))
    raise AssertionError("unreachable: split() checked the value with rows()")


def _take(value: Any, start: int, stop: int, dim: int) -> Any:
    if isinstance(value, np.ndarray):
        axis = _axis(value.ndim, dim, "value")
        return value[(slice(None),) * axis + (slice(start, stop),)]
    if type(value) is list:
        return value[start:stop]
    if isinstance(value, tuple):
        return _rebuild_tuple(value, [_take(item, start, stop, dim) for item in value])
    if isinstance(value, dict):
        return {key: _take(item, start, stop, dim) for key, item in value.items()}
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, (pandas.DataFrame, pandas.Series)):
        _rows_only(dim, "value", "a pandas object")
        return value.iloc[start:stop]
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return value.narrow(dim, start, stop - start)
    _describe(value, dim, "value")  # raises the "cannot be batched" error
    raise AssertionError("unreachable")


def _first_pandas(value: Any, pandas: Any) -> Any | None:
    if isinstance(value, (pandas.DataFrame, pandas.Series)):
        return value
    if isinstance(value, (tuple, dict)):
        for item in value.values() if isinstance(value, dict) else value:
            found = _first_pandas(item, pandas)
            if found is not None:
                return found
    return None


def _relabel(value: Any, labels: Any, pandas: Any) -> Any:
    if isinstance(value, (pandas.DataFrame, pandas.Series)):
        if len(value) == len(labels) and _is_positional(value.index, 0, len(value), pandas):
            value = value.copy(deep=False)
            value.index = labels
        return value
    if isinstance(value, tuple):
        return _rebuild_tuple(value, [_relabel(item, labels, pandas) for item in value])
    if isinstance(value, dict):
        return {key: _relabel(item, labels, pandas) for key, item in value.items()}
    return value


# -- small helpers --------------------------------------------------------------------------------


def _axis(ndim: int, dim: int, where: Any) -> int:
    if ndim == 0:
        raise InvalidArgument(f"{_name(where)} is a scalar (0-d array), which has no rows to "
                              "batch; send an array with one item per row")
    if not -ndim <= dim < ndim:
        raise InvalidArgument(f"{_name(where)} has {ndim} dimension(s), so batch_dim {dim} is "
                              "out of range; fix the method's batch_dim")
    return dim % ndim


def _rows_only(dim: int, where: Any, what: str) -> None:
    if dim != 0:
        raise InvalidArgument(f"{_name(where)} is {what}, which batches along rows only "
                              f"(batch_dim 0), but batch_dim is {dim}")


def _same_dtype(values: list[Any], where: str) -> None:
    dtype = values[0].dtype
    for index, value in enumerate(values):
        if value.dtype != dtype:
            # Merging would cast one call's values to the other's dtype: a silent change.
            raise InvalidArgument(f"cannot merge {where}: call {index} passes dtype "
                                  f"{value.dtype}, call 0 passes {dtype}")


def _rebuild_tuple(like: tuple[Any, ...], items: list[Any]) -> tuple[Any, ...]:
    if type(like) is tuple:
        return tuple(items)
    if hasattr(like, "_fields"):  # a namedtuple
        return type(like)(*items)
    return type(like)(items)


def _positional(value: Any, pandas: Any) -> Any:
    if _is_positional(value.index, 0, len(value), pandas):
        return value
    value = value.copy(deep=False)  # shares the data, owns the index
    value.index = pandas.RangeIndex(len(value))
    return value


def _is_positional(index: Any, start: int, stop: int, pandas: Any) -> bool:
    """Whether ``index`` is exactly start, start+1, ..., stop-1."""
    if isinstance(index, pandas.RangeIndex):
        return (index.step == 1 and index.start == start and index.stop == stop) or (
            start == stop and len(index) == 0)
    if len(index) != stop - start or index.dtype.kind not in "iu":
        return False
    return bool(len(index) == 0 or (index[0] == start and index.is_monotonic_increasing
                                    and index[-1] == stop - 1 and index.is_unique))
