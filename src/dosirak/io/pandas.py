"""PandasDataFrame and PandasSeries: tables as JSON, CSV or Parquet bodies.

    >>> @svc.api(input=PandasDataFrame(orient="records", columns=["a", "b"], dtype="float64",
    ...                                enforce_dtype=True),
    ...          output=PandasDataFrame())
    ... def predict(df: pd.DataFrame) -> pd.DataFrame: ...

JSON bodies follow pandas' ``orient`` layouts (``records`` ``[{"a": 1}]``, ``columns``
``{"a": {"0": 1}}``, ``index``, ``split``, ``values`` ``[[1, 2]]``) and are built with the
DataFrame constructor, not ``read_json``, so strings stay strings (read_json turns date-looking
text into timestamps). CSV (``text/csv``) and Parquet (``application/vnd.apache.parquet``, needs
pyarrow) bodies are read and written too; the Accept header picks the response format.
"""

from __future__ import annotations

import csv
import importlib.util
import io
from typing import Any

from dosirak.exceptions import BadInput, InvalidArgument, MissingDependency
from dosirak.io.base import (
    JSON_MEDIA_TYPE,
    InvalidOutput,
    IODescriptor,
    check_option,
    field_error,
)
from dosirak.io.encoding import dumps, loads, to_jsonable
from dosirak.io.limits import DEFAULT_LIMITS, InputLimits, limit_exceeded

CSV_MEDIA_TYPE = "text/csv"
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"
# What clients (and BentoML) commonly send Parquet as; read as Parquet here.
OCTET_STREAM = "application/octet-stream"
_ORIENTS = ("records", "columns", "index", "split", "values")
_FORMATS = {"json": JSON_MEDIA_TYPE, "csv": CSV_MEDIA_TYPE, "parquet": PARQUET_MEDIA_TYPE}
_EXAMPLE_ROWS = 10


def _pd() -> Any:
    try:
        import pandas
    except ImportError:
        raise MissingDependency("pandas descriptors need pandas: pip install "
                                "'dosirak[pandas]'") from None
    return pandas


def _has_pyarrow() -> bool:
    return importlib.util.find_spec("pyarrow") is not None


class PandasDataFrame(IODescriptor):
    """A ``pandas.DataFrame``.

    ``columns`` names the expected columns (and, with ``apply_column_names``, names the columns of
    ``values`` JSON and header-less CSV). ``dtype`` is one dtype or a ``{column: dtype}`` dict.
    ``shape`` is ``(rows, columns)`` with ``-1`` for any. With ``enforce_dtype`` a column that
    cannot take its dtype is a 400 naming the column (without it the column is left as it is);
    with ``enforce_shape`` the shape and the presence of ``columns`` are checked.
    ``default_format`` (``json``, ``csv``, ``parquet``) is the response format when the request's
    Accept header does not choose one.

    ``max_columns`` bounds the columns a body may declare (CSV fields per line, JSON keys,
    Parquet schema width); wider bodies are refused before pandas builds anything, since
    pandas' cost grows much faster than the body (60,000 CSV columns took a minute). Unset, the
    server's ``api_server.input_limits.max_dataframe_columns`` applies (1,000 by default).

    With ``enforce_dtype``, float columns refuse missing and infinite values (JSON ``null``,
    CSV ``nan`` or an empty field) with a 400 naming the column and row, since most models fail
    on them; ``allow_nonfinite=True`` lets them through as NaN and infinities.
    """

    python_type = "pandas.DataFrame"
    # pandas reads CSV at ~100 MB/s after ~0.4 ms of set-up: 128 KiB is ~2 ms of the loop.
    parse_on_loop_below = 128 * 1024

    def __init__(
        self,
        orient: str = "records",
        columns: list[str] | None = None,
        apply_column_names: bool = False,
        dtype: Any = None,
        enforce_dtype: bool = False,
        shape: tuple[int, int] | None = None,
        enforce_shape: bool = False,
        default_format: str = "json",
        max_columns: int | None = None,
        allow_nonfinite: bool = False,
    ) -> None:
        _pd()
        check_option(max_columns is None or (isinstance(max_columns, int) and max_columns >= 1),
                     f"PandasDataFrame: max_columns must be a positive int, got {max_columns!r}")
        check_option(orient in _ORIENTS,
                     f"PandasDataFrame: orient must be one of {_ORIENTS}, got {orient!r}")
        check_option(default_format in _FORMATS, f"PandasDataFrame: default_format must be one "
                     f"of {sorted(_FORMATS)}, got {default_format!r}")
        check_option(not apply_column_names or bool(columns),
                     "PandasDataFrame: apply_column_names=True needs columns=[...]")
        check_option(not enforce_dtype or dtype is not None,
                     "PandasDataFrame: enforce_dtype=True needs dtype= to enforce")
        check_option(not enforce_shape or shape is not None or columns is not None,
                     "PandasDataFrame: enforce_shape=True needs shape= or columns=")
        check_option(shape is None or (len(shape) == 2 and all(
            isinstance(size, int) and size >= -1 for size in shape)),
            f"PandasDataFrame: shape must be (rows, columns) with -1 for any, got {shape!r}")
        check_option(default_format != "parquet" or _has_pyarrow(),
                     "PandasDataFrame: default_format='parquet' needs pyarrow: pip install "
                     "pyarrow")
        self.orient = orient
        self.columns = list(columns) if columns is not None else None
        self.apply_column_names = apply_column_names
        self.dtype = _normalize_dtype(dtype)
        self.enforce_dtype = enforce_dtype
        self.shape = tuple(shape) if shape is not None else None
        self.enforce_shape = enforce_shape
        self.default_format = default_format
        parquet = (PARQUET_MEDIA_TYPE, OCTET_STREAM) if _has_pyarrow() else ()
        self.input_media_types = (JSON_MEDIA_TYPE, CSV_MEDIA_TYPE, *parquet)
        offered = [JSON_MEDIA_TYPE, CSV_MEDIA_TYPE, *parquet[:1]]
        offered.remove(_FORMATS[default_format])
        self.output_media_types = (_FORMATS[default_format], *offered)
        self.max_columns = max_columns
        self.allow_nonfinite = allow_nonfinite
        self._finite = enforce_dtype and not allow_nonfinite
        self.apply_limits(DEFAULT_LIMITS)

    def apply_limits(self, limits: InputLimits) -> None:
        self._max_columns = self.max_columns or limits.max_dataframe_columns
        self._max_cells = limits.max_dataframe_cells
        # The schema states the bound, so a client that follows it is never refused.
        width = self.shape[1] if self.enforce_shape and self.shape is not None else -1
        self._schema = _frame_schema(self.orient, self.columns, self.dtype,
                                     max_columns=self._max_columns if width == -1
                                     else min(width, self._max_columns),
                                     required=self.enforce_shape, finite=self._finite)

    @classmethod
    def from_sample(cls, sample: Any, *, orient: str = "records", enforce_dtype: bool = False,
                    enforce_shape: bool = False) -> PandasDataFrame:
        """A descriptor with the sample's columns and dtypes; the sample is the docs' example."""
        pd = _pd()
        frame = sample if isinstance(sample, pd.DataFrame) else pd.DataFrame(sample)
        descriptor = cls(orient=orient, columns=[str(c) for c in frame.columns],
                         dtype={str(c): str(t) for c, t in frame.dtypes.items()},
                         enforce_dtype=enforce_dtype, shape=(-1, frame.shape[1]),
                         enforce_shape=enforce_shape)
        descriptor.sample = frame
        return descriptor

    # ----- reading ------------------------------------------------------------------------

    def parse(self, body: bytes | bytearray, media_type: str, params: dict[str, str]) -> Any:
        pd = _pd()
        if media_type == CSV_MEDIA_TYPE:
            _check_csv_width(body, self._max_columns)
            try:
                if self.apply_column_names:
                    frame = pd.read_csv(io.BytesIO(body), header=None, names=self.columns)
                else:
                    frame = pd.read_csv(io.BytesIO(body))
            except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError,
                    UnicodeDecodeError) as error:
                raise BadInput(f"malformed CSV: {error}",
                               [field_error(["body"], str(error), "csv_invalid")]) from None
            return self._check(frame)
        if media_type in (PARQUET_MEDIA_TYPE, OCTET_STREAM):
            return self._check(_read_parquet(body, self._max_columns, self._max_cells))
        return self.from_json_value(loads(body))

    def from_json_value(self, value: Any) -> Any:
        return self._check(self._frame(value))

    def _frame(self, value: Any) -> Any:
        pd = _pd()
        orient = self.orient
        expected = {"records": list, "values": list, "columns": dict, "index": dict,
                    "split": dict}[orient]
        if not isinstance(value, expected):
            raise BadInput(f"orient {orient!r} expects a JSON {_json_kind(expected)}, like "
                           f"{_ORIENT_EXAMPLES[orient]}",
                           [field_error(["body"], f"expected a JSON {_json_kind(expected)}",
                                        "type_error")])
        _check_json_width(value, orient, self._max_columns)
        try:
            if orient == "records":
                if value and not all(isinstance(row, dict) for row in value):
                    if self.columns is None or not all(isinstance(r, list) for r in value):
                        raise BadInput("orient 'records' expects a list of objects like "
                                       '[{"a": 1, "b": 2}]',
                                       [field_error(["body"], "rows must be objects",
                                                    "type_error")])
                    return pd.DataFrame(value, columns=self.columns)
                return pd.DataFrame(value) if value else pd.DataFrame(columns=self.columns)
            if orient == "values":
                return pd.DataFrame(value, columns=self.columns if self.apply_column_names
                                    else None)
            if orient == "columns":
                return pd.DataFrame(value)
            if orient == "index":
                return pd.DataFrame.from_dict(value, orient="index")
            if set(value) - {"columns", "index", "data"} or "data" not in value:
                raise BadInput('orient \'split\' expects {"columns": [...], "index": [...], '
                               '"data": [[...]]}',
                               [field_error(["body"], "expected keys columns, index, data",
                                            "type_error")])
            return pd.DataFrame(value["data"], index=value.get("index"),
                                columns=value.get("columns"))
        except (ValueError, TypeError) as error:
            raise BadInput(f"the JSON does not make a table: {error}",
                           [field_error(["body"], str(error), "value_error")]) from None

    def from_frame(self, frame: Any) -> Any:
        """The value for a DataFrame built from columns that arrived one by one (tensors of the
        Open Inference Protocol): the same shape, dtype and finiteness checks as a body gets."""
        return self._check(frame)

    def _check(self, frame: Any) -> Any:
        if self.apply_column_names and self.columns is not None and \
                len(frame.columns) == len(self.columns):
            frame.columns = self.columns
        if self.enforce_shape:
            _check_frame_shape(frame, self.shape, self.columns)
        if self.dtype is not None:
            frame = _apply_dtype(frame, self.dtype, self.enforce_dtype)
            if self._finite:
                _refuse_nonfinite(frame, self.dtype)
        return frame

    # ----- writing ------------------------------------------------------------------------

    def render(self, value: Any, media_type: str) -> tuple[bytes, str]:
        pd = _pd()
        frame = value
        if not isinstance(frame, pd.DataFrame):
            try:
                frame = pd.DataFrame(value)
            except (ValueError, TypeError) as error:
                raise InvalidOutput(f"the API returned {type(value).__name__}, which is not a "
                                    f"table ({error}); return a pandas DataFrame") from None
        if media_type == CSV_MEDIA_TYPE:
            return frame.to_csv(index=False).encode("utf-8"), "text/csv; charset=utf-8"
        if media_type == PARQUET_MEDIA_TYPE:
            buffer = io.BytesIO()
            frame.to_parquet(buffer)
            return buffer.getvalue(), PARQUET_MEDIA_TYPE
        try:
            text = frame.to_json(orient=self.orient, date_format="iso")
        except ValueError as error:  # e.g. a duplicate index with orient 'index'
            raise InvalidOutput(f"the DataFrame cannot be written with orient "
                                f"{self.orient!r}: {error}") from None
        return text.encode("utf-8"), JSON_MEDIA_TYPE

    # ----- describing ---------------------------------------------------------------------

    def schema(self) -> dict[str, Any]:
        return dict(self._schema)

    def example(self) -> Any:
        if self.sample is None:
            return None
        text = self.sample.head(_EXAMPLE_ROWS).to_json(orient=self.orient, date_format="iso")
        return loads(text)

    def to_spec(self) -> dict[str, Any]:
        return {"type": "PandasDataFrame", "orient": self.orient, "columns": self.columns,
                "apply_column_names": self.apply_column_names, "dtype": to_jsonable(self.dtype),
                "enforce_dtype": self.enforce_dtype,
                "shape": None if self.shape is None else list(self.shape),
                "enforce_shape": self.enforce_shape, "default_format": self.default_format,
                "max_columns": self.max_columns, "allow_nonfinite": self.allow_nonfinite}


class PandasSeries(IODescriptor):
    """A ``pandas.Series``: a JSON list (or an ``{index: value}`` object) of values."""

    python_type = "pandas.Series"
    parse_on_loop_below = 128 * 1024  # as PandasDataFrame

    def __init__(self, orient: str = "records", dtype: Any = None, enforce_dtype: bool = False,
                 shape: tuple[int] | None = None, enforce_shape: bool = False) -> None:
        _pd()
        check_option(orient in ("records", "index"),
                     f"PandasSeries: orient must be 'records' or 'index', got {orient!r}")
        check_option(not enforce_dtype or dtype is not None,
                     "PandasSeries: enforce_dtype=True needs dtype= to enforce")
        check_option(not enforce_shape or shape is not None,
                     "PandasSeries: enforce_shape=True needs shape= to enforce")
        self.orient = orient
        self.dtype = dtype
        self.enforce_dtype = enforce_dtype
        self.shape = tuple(shape) if shape is not None else None
        self.enforce_shape = enforce_shape
        item = _dtype_schema(dtype)
        # Both forms are read whatever the orient (which decides how answers are written).
        forms = [{"type": "array", "items": item},
                 {"type": "object", "additionalProperties": item}]
        self._schema: dict[str, Any] = {"anyOf": forms if orient == "records" else forms[::-1]}

    @classmethod
    def from_sample(cls, sample: Any, *, enforce_dtype: bool = False) -> PandasSeries:
        """A descriptor with the sample's dtype; the sample is the docs' example."""
        pd = _pd()
        series = sample if isinstance(sample, pd.Series) else pd.Series(sample)
        descriptor = cls(dtype=str(series.dtype), enforce_dtype=enforce_dtype)
        descriptor.sample = series
        return descriptor

    def parse(self, body: bytes | bytearray, media_type: str, params: dict[str, str]) -> Any:
        return self.from_json_value(loads(body))

    def from_json_value(self, value: Any) -> Any:
        pd = _pd()
        if not isinstance(value, (list, dict)):
            raise BadInput("a PandasSeries expects a JSON array of values like [1, 2, 3]",
                           [field_error(["body"], "expected a JSON array", "type_error")])
        if any(isinstance(item, (list, dict)) for item in
               (value.values() if isinstance(value, dict) else value)):
            raise BadInput("a PandasSeries holds single values, not nested lists or objects",
                           [field_error(["body"], "nested values", "type_error")])
        series = pd.Series(value)
        if self.enforce_shape and self.shape is not None and self.shape[0] != -1 and \
                len(series) != self.shape[0]:
            raise BadInput(f"expected {self.shape[0]} values, got {len(series)}",
                           [field_error(["body", "axis 0"], f"has {len(series)} element(s), "
                                        f"expected {self.shape[0]}", "shape_error")])
        if self.dtype is not None:
            if self.enforce_dtype and _holds_non_numbers(series, self.dtype):
                raise BadInput(f"expected {self.dtype} numbers, got {_kind_of(series)}; send "
                               "JSON numbers (text and true/false are not read as numbers)",
                               [field_error(["body"], f"{_kind_of(series)} where {self.dtype} "
                                            "numbers were expected", "dtype_error")])
            try:
                series = series.astype(self.dtype)
            except (ValueError, TypeError) as error:
                if self.enforce_dtype:
                    raise BadInput(f"the values cannot be {self.dtype}: {error}",
                                   [field_error(["body"], str(error), "dtype_error")]) from None
        return series

    def render(self, value: Any, media_type: str) -> tuple[bytes, str]:
        pd = _pd()
        series = value if isinstance(value, pd.Series) else pd.Series(value)
        if self.orient == "records" and series.dtype.kind in "iufb":
            # pandas writes 10 significant digits: 1.7976931348623157e308 became 1.797693135e308,
            # past the double range (read back as infinity); orjson writes the shortest exact form.
            return dumps(series.to_numpy()), JSON_MEDIA_TYPE
        return series.to_json(orient=self.orient, date_format="iso").encode(), JSON_MEDIA_TYPE

    def schema(self) -> dict[str, Any]:
        return dict(self._schema)

    def example(self) -> Any:
        if self.sample is None:
            return None
        return loads(self.sample.head(_EXAMPLE_ROWS).to_json(orient=self.orient))

    def to_spec(self) -> dict[str, Any]:
        return {"type": "PandasSeries", "orient": self.orient, "dtype": str(self.dtype),
                "enforce_dtype": self.enforce_dtype,
                "shape": None if self.shape is None else list(self.shape),
                "enforce_shape": self.enforce_shape}


_ORIENT_EXAMPLES = {
    "records": '[{"a": 1, "b": 2}]',
    "values": "[[1, 2], [3, 4]]",
    "columns": '{"a": {"0": 1}, "b": {"0": 2}}',
    "index": '{"0": {"a": 1, "b": 2}}',
    "split": '{"columns": ["a", "b"], "index": [0], "data": [[1, 2]]}',
}


def _json_kind(kind: type) -> str:
    return "array" if kind is list else "object"


def _check_width(found: int, limit: int) -> None:
    if found > limit:
        raise limit_exceeded("columns", found, limit, "max_columns", "max_dataframe_columns")


def _check_csv_width(body: bytes | bytearray, limit: int) -> None:
    """Refuse a CSV whose header or first row is wider than ``limit`` fields.

    pandas names every header column and turns the surplus fields of the first data row into
    index levels, both at a cost far above linear; later rows of another width are a quick
    tokenizer error. So only the first two logical rows are measured, and only when the body
    holds enough commas for any row to be too wide (one C-level count for usual bodies).
    """
    if body.count(b",") < limit:
        return
    text = io.TextIOWrapper(io.BytesIO(body), encoding="utf-8", errors="replace", newline="")
    try:
        for _, row in zip(range(2), csv.reader(text), strict=False):
            _check_width(len(row), limit)
    except csv.Error:
        return  # not CSV as the csv module reads it: pandas names the problem


def _check_json_width(value: Any, orient: str, limit: int) -> None:
    """Refuse a JSON table with more than ``limit`` columns before pandas builds it."""
    if orient == "columns":
        found = len(value)
    elif orient == "index":
        rows = [row for row in value.values() if isinstance(row, dict)]
        found = len(set().union(*rows)) if rows else 0
    elif orient == "split":
        data = value.get("data")
        found = max(len(value.get("columns") or ()), _widest(data if isinstance(data, list)
                                                             else []))
    elif value and all(type(row) is dict for row in value):  # records
        found = len(set().union(*value))
    else:  # values, or records given as lists
        found = _widest(value)
    _check_width(found, limit)


def _widest(rows: list[Any]) -> int:
    return max((len(row) for row in rows if isinstance(row, (list, dict))), default=0)


def _read_parquet(body: bytes | bytearray, max_columns: int, max_cells: int) -> Any:
    if not _has_pyarrow():  # pragma: no cover - the media type is not offered without it
        raise MissingDependency("Parquet bodies need pyarrow: pip install pyarrow")
    import pyarrow
    import pyarrow.parquet as parquet

    try:
        # The footer says how wide and long the table is; its encodings may make a few
        # kilobytes into billions of cells, so it is measured before anything is decoded.
        source = parquet.ParquetFile(pyarrow.BufferReader(bytes(body)))
        columns, rows = source.metadata.num_columns, source.metadata.num_rows
        _check_width(columns, max_columns)
        if columns * rows > max_cells:
            raise limit_exceeded("cells (rows x columns)", columns * rows, max_cells,
                                 "max_columns", "max_dataframe_cells")
        table = source.read()
        return table.to_pandas()
    except (pyarrow.ArrowException, OSError, ValueError) as error:
        raise BadInput(f"malformed Parquet body: {error}",
                       [field_error(["body"], str(error), "parquet_invalid")]) from None


def _normalize_dtype(dtype: Any) -> Any:
    if dtype is None:
        return None
    pd = _pd()
    try:
        if isinstance(dtype, dict):
            return {str(column): str(pd.api.types.pandas_dtype(value))
                    for column, value in dtype.items()}
        return str(pd.api.types.pandas_dtype(dtype))
    except TypeError as error:
        raise InvalidArgument(f"PandasDataFrame: dtype {dtype!r} is not a pandas dtype "
                              f"({error})") from None


def _check_frame_shape(frame: Any, shape: tuple[int, ...] | None,
                       columns: list[str] | None) -> None:
    detail = []
    if shape is not None:
        for axis, (size, want) in enumerate(zip(frame.shape, shape, strict=True)):
            if want != -1 and size != want:
                name = "rows" if axis == 0 else "columns"
                detail.append(field_error(["body", f"axis {axis}"],
                                          f"has {size} {name}, expected {want}", "shape_error"))
    if columns is not None:
        present = {str(c) for c in frame.columns}
        detail.extend(field_error(["body", column], "column is missing", "missing")
                      for column in columns if column not in present)
    if detail:
        raise BadInput("the table does not have the expected shape: " +
                       "; ".join(f"{d['loc'][-1]} {d['msg']}" for d in detail), detail)


def _apply_dtype(frame: Any, dtype: Any, enforce: bool) -> Any:
    targets = dtype if isinstance(dtype, dict) else {str(c): dtype for c in frame.columns}
    detail = []
    for column in frame.columns:
        target = targets.get(str(column))
        if target is None or str(frame[column].dtype) == target:
            continue
        if enforce and _holds_non_numbers(frame[column], target):
            detail.append(field_error(["body", str(column)], f"cannot be {target}: it holds "
                                      f"{_kind_of(frame[column])}, not numbers", "dtype_error"))
            continue
        try:
            frame[column] = frame[column].astype(target)
        except (ValueError, TypeError) as error:
            if enforce:
                detail.append(field_error(["body", str(column)],
                                          f"cannot be {target}: {error}", "dtype_error"))
    if detail:
        raise BadInput("column(s) with the wrong type: " +
                       ", ".join(str(d["loc"][-1]) for d in detail), detail)
    return frame


# The column kinds a numeric target dtype takes (by its kind); pandas' astype would also turn
# text ("1.5") and booleans into numbers, which a schema of numbers refuses.
_NUMBER_SOURCES = {"i": "iu", "u": "iu", "f": "iuf"}
_NUMBERS_INFERRED = {"i": ("empty", "integer"), "u": ("empty", "integer"),
                     "f": ("empty", "integer", "floating", "mixed-integer-float")}


def _holds_non_numbers(values: Any, target: Any) -> bool:
    """Whether a numeric ``target`` dtype is given text, booleans or floats for integers.

    A column already of a number kind costs one comparison; only object columns (missing
    values, mixed JSON) are looked at value by value, in pandas' C inference.
    """
    types = _pd().api.types
    kind = types.pandas_dtype(target).kind
    wanted = _NUMBER_SOURCES.get(kind)
    if wanted is None or len(values) == 0 or values.dtype.kind in wanted:
        return False
    if values.dtype.kind != "O":
        return True
    return types.infer_dtype(values, skipna=True) not in _NUMBERS_INFERRED[kind]


def _kind_of(values: Any) -> str:
    if values.dtype.kind == "O":
        return _pd().api.types.infer_dtype(values, skipna=True) + " values"
    return f"{values.dtype} values"


def _refuse_nonfinite(frame: Any, dtype: Any) -> None:
    """Refuse NaN and infinities in the columns ``dtype`` makes float, naming each column."""
    import numpy as np

    detail = []
    for column in frame.columns:
        if isinstance(dtype, dict) and str(column) not in dtype:
            continue
        values = frame[column].to_numpy()
        if values.dtype.kind != "f":
            continue
        finite = np.isfinite(values)
        if not finite.all():
            row = int(np.argmin(finite))
            detail.append(field_error(["body", str(column)], f"row {row} is {values[row]} "
                                      "(missing or infinite); send a finite number",
                                      "finite_number"))
    if detail:
        raise BadInput("column(s) with missing or infinite values: " +
                       ", ".join(str(d["loc"][-1]) for d in detail) + "; this API needs finite "
                       "numbers (the descriptor's allow_nonfinite=True would accept them)",
                       detail)


def _dtype_schema(dtype: Any, finite: bool = False) -> dict[str, Any]:
    if dtype is None:
        return {}
    text = str(dtype)
    if text.startswith(("int", "uint", "Int", "UInt")):
        return {"type": "integer"}
    if text.startswith(("float", "Float")):
        if finite:
            return {"type": "number"}
        return {"type": "number", "nullable": True}  # missing values are NaN, written as null
    if text in ("bool", "boolean"):
        return {"type": "boolean"}
    if text in ("object", "string", "str") or text.startswith("string"):
        return {"type": "string"}
    return {}


def _frame_schema(orient: str, columns: list[str] | None, dtype: Any, *, max_columns: int,
                  required: bool = False, finite: bool = False) -> dict[str, Any]:
    """The JSON schema of a table body: its columns, their types and the bounds checked."""
    def column_schema(column: str) -> dict[str, Any]:
        return _dtype_schema(dtype.get(column) if isinstance(dtype, dict) else dtype, finite)

    width = {"maxItems": max_columns}
    if orient == "values":
        return {"type": "array", "items": {"type": "array", "items": {}, **width}}
    if orient == "split":
        return {"type": "object", "required": ["data"], "properties": {
            "columns": {"type": "array", "items": {"type": "string"}, **width},
            "index": {"type": "array"},
            "data": {"type": "array", "items": {"type": "array", **width}}}}
    row: dict[str, Any] = {"type": "object", "maxProperties": max_columns}
    if columns:
        row["properties"] = {c: column_schema(c) for c in columns}
        if required and orient != "columns":
            row["required"] = list(columns)
    if orient == "records":
        return {"type": "array", "items": row}
    if orient == "index":
        return {"type": "object", "additionalProperties": row}
    # "columns": {column: {index: value}}
    table: dict[str, Any] = {"type": "object", "maxProperties": max_columns,
                             "additionalProperties": {"type": "object"}}
    if columns:
        table["properties"] = {c: {"type": "object", "additionalProperties": column_schema(c)}
                               for c in columns}
        if required:
            table["required"] = list(columns)
    return table
