"""Between file rows and API values: what an API receives for a chunk, and its rows of results.

APIs that take a whole table (``NumpyNdarray``, ``PandasDataFrame``) get one chunk per call:
a 2-D array of the chunk's columns, or the chunk's DataFrame (the descriptor's dtype applied).
APIs whose input is one item (``JSON``, ``Text``, ``PandasSeries``) get one row per call: a row
is a JSON object of its columns (a JSON line as it is), a string, a Series of features. A row
that cannot become the API's input is a bad row, reported with its number; the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dosirak.exceptions import BadInput, InvalidArgument
from dosirak.io import JSON, NumpyNdarray, PandasDataFrame, PandasSeries, Text
from dosirak.offline.readers import Chunk, Unreadable

TABLE_INPUTS = (NumpyNdarray, PandasDataFrame)
ROW_INPUTS = (JSON, Text, PandasSeries)


@dataclass
class Prepared:
    """A chunk made ready for the API: ``value`` holds the rows at ``positions`` (row numbers).

    ``bad`` lists rows that could not be converted: ``(row, message)``.
    """

    value: Any
    positions: np.ndarray
    bad: list[tuple[int, str]]


def table_mode(descriptor: Any, api_name: str) -> bool:
    """True when the API takes a whole chunk per call, False when it takes one row per call."""
    if isinstance(descriptor, TABLE_INPUTS):
        return True
    if isinstance(descriptor, ROW_INPUTS):
        return False
    raise InvalidArgument(f"API {api_name!r} takes {type(descriptor).__name__}; batch inference "
                          "reads rows of tables, so it runs APIs whose input is NumpyNdarray, "
                          "PandasDataFrame, PandasSeries, JSON or Text")


def prepare(chunk: Chunk, descriptor: Any) -> Prepared:
    """The API input for a chunk (table mode), with the rows that could not be part of it."""
    positions = np.arange(chunk.start, chunk.start + chunk.rows)
    data, bad = _readable(chunk.data, positions)
    if bad:
        keep = np.isin(positions, [row for row, _ in bad], invert=True)
        positions = positions[keep]
    convert = _array if isinstance(descriptor, NumpyNdarray) else _frame
    try:
        return Prepared(convert(data, descriptor), positions, bad)
    except (ValueError, TypeError, BadInput):
        pass
    # Some row spoils the chunk: convert row by row to find it, then convert the rest at once.
    rows = _row_values(data)
    good: list[int] = []
    for index, row in enumerate(rows):
        try:
            convert(_one_row(data, index, row), descriptor)
            good.append(index)
        except (ValueError, TypeError, BadInput) as error:
            bad.append((int(positions[index]), _message(error)))
    value = convert(_take_rows(data, good), descriptor)
    return Prepared(value, positions[good], sorted(bad))


def prepare_rows(chunk: Chunk, descriptor: Any) -> list[tuple[int, Any, str | None]]:
    """One API input per row (row mode): ``(row, value, None)``, or ``(row, None, message)``
    for a row that cannot be the API's input."""
    positions = range(chunk.start, chunk.start + chunk.rows)
    rows = _row_values(chunk.data)
    prepared: list[Any] = []
    for position, row in zip(positions, rows, strict=True):
        if isinstance(row, Unreadable):
            prepared.append((position, None, row.message))
            continue
        try:
            prepared.append((position, _row_input(row, descriptor), None))
        except (ValueError, TypeError, BadInput) as error:
            prepared.append((position, None, _message(error)))
    return prepared


def _row_input(row: Any, descriptor: Any) -> Any:
    if isinstance(descriptor, Text):
        if isinstance(row, dict) and len(row) == 1:
            row = next(iter(row.values()))
        if not isinstance(row, str):
            raise BadInput(f"a Text API needs one string per row, got {type(row).__name__}")
        return row
    if isinstance(descriptor, PandasSeries) and isinstance(row, dict):
        import pandas as pd

        return pd.Series(row)  # the seed: a Series is one row of features, named by its index
    return descriptor.from_json_value(row)


def results_of(result: Any, rows: int, api_name: str) -> Any:
    """The API's answer for ``rows`` rows, as an array or a DataFrame of exactly ``rows`` rows."""
    import pandas as pd

    if isinstance(result, pd.Series):
        result = result.to_frame(name=result.name if result.name is not None else "result")
    elif not isinstance(result, pd.DataFrame):
        result = rows_of(list(result) if isinstance(result, (list, tuple)) else result)
    if len(result) != rows:
        raise InvalidArgument(f"API {api_name!r} answered {len(result)} rows for {rows} input "
                              "rows; batch inference needs one answer row per input row")
    if isinstance(result, pd.DataFrame):
        result = result.reset_index(drop=True)
    return result


def rows_of(values: Any) -> Any:
    """Per-row answers (or an array-like) as an array when they are numbers, else a table."""
    import pandas as pd

    if isinstance(values, np.ndarray):
        return values
    if hasattr(values, "detach") and hasattr(values, "numpy"):  # a torch tensor
        return values.detach().cpu().numpy()
    values = list(values)
    if values and all(isinstance(value, dict) for value in values):
        return pd.DataFrame(values)
    try:
        array = np.asarray(values)
    except ValueError:  # ragged: one nested value per row
        array = None
    if array is not None and not array.dtype.hasobject and (array.ndim >= 1 or not values):
        return array
    from dosirak.io.encoding import to_jsonable

    return pd.DataFrame({"result": [to_jsonable(value) for value in values]})


def take(value: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of a prepared value (array or DataFrame)."""
    return value.iloc[start:stop] if hasattr(value, "iloc") else value[start:stop]


def merge(parts: list[Any]) -> Any:
    """Result parts (arrays or DataFrames), in order, as one."""
    import pandas as pd

    if len(parts) == 1:
        return parts[0]
    if all(isinstance(part, pd.DataFrame) for part in parts):
        return pd.concat(parts, ignore_index=True)
    return np.concatenate([part.to_numpy() if hasattr(part, "to_numpy") else np.asarray(part)
                           for part in parts])


# ----- conversions ------------------------------------------------------------------------


def _readable(data: Any, positions: np.ndarray) -> tuple[Any, list[tuple[int, str]]]:
    if not isinstance(data, list):
        return data, []
    bad = [(int(positions[index]), row.message) for index, row in enumerate(data)
           if isinstance(row, Unreadable)]
    if bad:
        data = [row for row in data if not isinstance(row, Unreadable)]
    return data, bad


def _array(data: Any, descriptor: NumpyNdarray) -> np.ndarray:
    dtype = descriptor.dtype
    if isinstance(data, list) and data and all(isinstance(row, dict) for row in data):
        import pandas as pd

        data = pd.DataFrame(data)  # JSON lines of objects: their values, in column order
    if hasattr(data, "to_numpy"):
        array = data.to_numpy(dtype=dtype) if dtype is not None else _numeric(data)
    else:
        array = np.asarray(data, dtype=dtype)
        if array.dtype.hasobject:
            raise ValueError("rows are not all arrays of numbers of one length")
    if descriptor.enforce_shape and descriptor.shape is not None:
        expected = descriptor.shape[1:]
        if len(array.shape) - 1 != len(expected) or any(
                want not in (-1, size) for size, want in zip(array.shape[1:], expected,
                                                             strict=False)):
            raise InvalidArgument(f"the API takes rows of shape {expected}, the file's rows have "
                                  f"shape {array.shape[1:]}; check the input's columns")
    return array


def _numeric(frame: Any) -> np.ndarray:
    array = frame.to_numpy()
    if array.dtype.hasobject:  # a text value in a number column: which row, the caller finds
        array = frame.to_numpy(dtype=np.float64)
    return array


def _frame(data: Any, descriptor: PandasDataFrame) -> Any:
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, np.ndarray):
        frame = pd.DataFrame(data, columns=descriptor.columns)
    else:
        if data and not all(isinstance(row, dict) for row in data):
            frame = pd.DataFrame(data, columns=descriptor.columns)
        else:
            frame = pd.DataFrame(data)
    if descriptor.columns is not None and descriptor.enforce_shape:
        missing = [column for column in descriptor.columns if column not in frame.columns]
        if missing:
            raise InvalidArgument(f"the API needs columns {missing}, which the input lacks "
                                  f"(it has {list(frame.columns)})")
    if descriptor.dtype is not None:
        frame = frame.astype(descriptor.dtype)
    return frame


def _row_values(data: Any) -> list[Any]:
    if hasattr(data, "to_dict"):
        return data.to_dict(orient="records")
    if isinstance(data, np.ndarray):
        return list(data.tolist())
    return list(data)


def _one_row(data: Any, index: int, row: Any) -> Any:
    if hasattr(data, "iloc"):
        return data.iloc[index:index + 1]
    if isinstance(data, np.ndarray):
        return data[index:index + 1]
    return [row]


def _take_rows(data: Any, indices: list[int]) -> Any:
    if hasattr(data, "iloc"):
        return data.iloc[indices]
    if isinstance(data, np.ndarray):
        return data[indices]
    return [data[index] for index in indices]


def _message(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if not isinstance(error, BadInput) else str(error)

