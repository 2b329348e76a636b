"""NumpyNdarray: arrays as JSON nested lists, or as binary ``.npy`` bodies for large tensors.

    >>> @svc.api(input=NumpyNdarray(dtype="float32", shape=(-1, 4), enforce_shape=True),
    ...          output=NumpyNdarray())
    ... def classify(x: np.ndarray) -> np.ndarray: ...

A request chooses its format with Content-Type (``application/json`` or ``application/x-npy``)
and the response's with Accept. ``.npy`` bodies are read without pickle: arrays of Python objects
are refused, so a request can never run code.
"""

from __future__ import annotations

import io
import math
import tokenize
from typing import Any

import numpy as np

from dosirak.exceptions import BadInput, InvalidArgument
from dosirak.io.base import (
    JSON_MEDIA_TYPE,
    InvalidOutput,
    IODescriptor,
    check_option,
    field_error,
)
from dosirak.io.encoding import dumps, loads

NPY_MEDIA_TYPE = "application/x-npy"
_NPY_MAGIC = b"\x93NUMPY"
_NPY_HEADER_LIMIT = 12 + 10_000  # magic, length, and numpy's own header size cap
_EXAMPLE_ROWS = 10  # the docs show at most this many rows of a sample
_NUMBER_KINDS = "iufc"  # numpy dtype kinds of numbers (bool is "b")


class NumpyNdarray(IODescriptor):
    """A ``numpy.ndarray`` input or output.

    ``dtype`` and ``shape`` describe the array (``-1`` or ``None`` in ``shape`` means any size
    on that axis). With ``enforce_dtype`` a request whose values cannot become ``dtype`` without
    losing their kind (floats for an int array, text for numbers) is refused with a 400; without
    it the array is converted when possible. With ``enforce_shape`` every axis is checked and the
    400 names the axis that is wrong. The seeds' spelling ``schema=np.dtype(...)`` and
    ``validate=True`` means ``dtype=`` with both checks on.

    JSON booleans: with ``enforce_dtype`` and a numeric ``dtype`` (int, uint, float, complex), a
    ``true`` or ``false`` anywhere in the array is refused with a 400 naming its place, even
    mixed with numbers (``[[true, 1.0]]``), which numpy would otherwise read as ``1.0``: a flag
    sent where a feature value belongs is a client bug to report, not a number. With
    ``dtype=bool`` booleans are the expected values. Without ``enforce_dtype`` a declared dtype
    converts them as numpy does (``true`` becomes ``1``), and with no dtype declared the array
    is what numpy makes of the lists: all booleans give a bool array, booleans mixed with numbers
    become numbers.

    Non-finite values: with ``enforce_dtype`` and a float or complex ``dtype``, NaN and
    infinities (in a ``.npy`` body, or from a JSON number too large for ``dtype``) are refused
    with a 400 naming the first one, since most models fail on them;
    ``allow_nonfinite=True`` lets them through. The OpenAPI schema then states finite numbers
    within the dtype's range.
    """

    input_media_types = (JSON_MEDIA_TYPE, NPY_MEDIA_TYPE)
    output_media_types = (JSON_MEDIA_TYPE, NPY_MEDIA_TYPE)
    python_type = "numpy.ndarray"

    def __init__(
        self,
        dtype: Any = None,
        shape: tuple[int | None, ...] | list[int | None] | None = None,
        enforce_dtype: bool = False,
        enforce_shape: bool = False,
        *,
        schema: Any = None,
        validate: bool | None = None,
        allow_nonfinite: bool = False,
    ) -> None:
        if schema is not None:
            check_option(dtype is None, "NumpyNdarray: give dtype= or schema=, not both")
            dtype = schema
        if validate:
            enforce_dtype = dtype is not None
            enforce_shape = shape is not None
        try:
            self.dtype = np.dtype(dtype) if dtype is not None else None
        except TypeError as error:
            raise InvalidArgument(f"NumpyNdarray: {dtype!r} is not a numpy dtype ({error}); use "
                                  "e.g. 'float32' or np.dtype('int64')") from None
        self.shape = _normalize_shape(shape)
        check_option(not enforce_dtype or self.dtype is not None,
                     "NumpyNdarray: enforce_dtype=True needs dtype= to enforce")
        check_option(not enforce_shape or self.shape is not None,
                     "NumpyNdarray: enforce_shape=True needs shape= to enforce")
        self.enforce_dtype = bool(enforce_dtype)
        self.enforce_shape = bool(enforce_shape)
        self.allow_nonfinite = bool(allow_nonfinite)
        self._finite = (self.enforce_dtype and not self.allow_nonfinite
                        and self.dtype is not None and self.dtype.kind in "fc")
        # JSON numbers are finite doubles (orjson refuses NaN, Infinity and 1e999): only a
        # narrower dtype can overflow to an infinity, so only then is a JSON body checked.
        self._finite_from_json = self._finite and self.dtype is not None and \
            np.finfo(self.dtype).max < np.finfo(np.float64).max
        # The schema promises only what is checked: clients and fuzzers take it at its word.
        checked_dtype = self.dtype if self.enforce_dtype else None
        self._schema = self._array_schema(checked_dtype, finite=self._finite)
        # Responses write NaN and infinities as null, whatever requests may hold.
        self._output_schema = self._array_schema(checked_dtype, finite=False)

    def _array_schema(self, dtype: np.dtype | None, *, finite: bool) -> dict[str, Any]:
        item = _item_schema(dtype, finite)
        if self.enforce_shape or (self.shape is not None and item):
            assert self.shape is not None
            # An unchecked shape is still the form the API expects: its number of dimensions
            # and inner sizes (axis 0 left free), which keeps every schema-valid array
            # rectangular. Arrays of another form are accepted but not promised.
            shape = self.shape if self.enforce_shape else (-1, *self.shape[1:])
            return _nested_schema(item, shape)
        if item:
            # Nested lists of any depth cannot be stated without allowing ragged ones, which
            # numpy refuses: promise one value or a flat list of them.
            return {"anyOf": [{"type": "array", "items": item}, item]}
        # Any number of dimensions: nested arrays of any depth, or one value (a 0-d array).
        return {"anyOf": [{"type": "array", "items": {}}, {"type": "number"},
                          {"type": "string"}, {"type": "boolean"}]}

    @classmethod
    def from_sample(cls, sample: Any, *, enforce_dtype: bool = False,
                    enforce_shape: bool = False) -> NumpyNdarray:
        """A descriptor with the sample's dtype and shape; the sample becomes the docs' example."""
        array = np.asarray(sample)
        descriptor = cls(dtype=array.dtype, shape=array.shape, enforce_dtype=enforce_dtype,
                         enforce_shape=enforce_shape)
        descriptor.sample = array
        return descriptor

    # ----- reading ------------------------------------------------------------------------

    def parse(self, body: bytes | bytearray, media_type: str, params: dict[str, str]) -> Any:
        if media_type == NPY_MEDIA_TYPE:
            return self._check(load_npy(body), self._finite)
        # JSON numbers are digits, sign, point and exponent: without a "t" or an "f" the body
        # holds no true or false, and the usual numeric body is spared the search for one. A
        # one-byte scan is a memchr, about 1% of the parse (a "true" substring scan is 15%).
        return self._from_json(loads(body), may_hold_bool=b"t" in body or b"f" in body)

    def from_json_value(self, value: Any) -> np.ndarray:
        return self._from_json(value, may_hold_bool=True)

    def _from_json(self, value: Any, *, may_hold_bool: bool) -> np.ndarray:
        try:
            if self.dtype is not None and not self.enforce_dtype:
                try:
                    return self._check_shape(np.asarray(value, dtype=self.dtype))
                except (ValueError, TypeError, OverflowError):
                    pass  # not convertible: let the checks below say why, or pass it as it is
            array = np.asarray(value)
        except ValueError as error:
            raise BadInput("the array is ragged: every row must have the same length",
                           [field_error(["body"], _ragged_message(error))]) from None
        except OverflowError:
            raise BadInput("a number is too large for a numpy array",
                           [field_error(["body"], "integer out of the 64-bit range")]) from None
        if array.dtype.hasobject and (self.dtype is None or not self.dtype.hasobject):
            raise BadInput("expected nested lists of numbers (or of strings)",
                           [field_error(["body"], "the JSON mixes types or holds objects; send "
                                        "an array like [[1.0, 2.0], [3.0, 4.0]]", "type_error")])
        if (self.enforce_dtype and self.dtype is not None and self.dtype.kind in _NUMBER_KINDS
                and (array.dtype.kind == "b" or (may_hold_bool
                                                 and array.dtype.kind in _NUMBER_KINDS))):
            self._refuse_booleans(value)
        return self._check(array, self._finite_from_json)

    def _refuse_booleans(self, value: Any) -> None:
        """Raise ``BadInput`` naming the first JSON boolean in ``value``, if it holds one."""
        place = _first_bool(value)
        if place is None:
            return
        where = "at " + "".join(f"[{index}]" for index in place) if place else "as the body"
        raise BadInput(f"expected an array of {self.dtype}, got a boolean (true/false) {where} "
                       "where a number was expected: JSON booleans are not read as "
                       "numbers, since a flag in place of a value is most likely a client bug; "
                       "send the number (1 or 0), or declare dtype=bool for an array of flags",
                       [field_error(["body", *place], f"boolean where a number ({self.dtype}) was "
                                    "expected", "dtype_error")])

    def _check(self, array: np.ndarray, finite: bool) -> np.ndarray:
        if self.dtype is not None and array.dtype != self.dtype:
            array = self._convert(array)
        if finite:
            _refuse_nonfinite(array)
        return self._check_shape(array)

    def _convert(self, array: np.ndarray) -> np.ndarray:
        assert self.dtype is not None
        if self.enforce_dtype:
            if array.size and not _same_kind(array, self.dtype):
                raise BadInput(f"expected an array of {self.dtype}, got {array.dtype}",
                               [field_error(["body"], f"values of type {array.dtype} cannot be "
                                            f"{self.dtype}", "dtype_error")])
            try:
                return array.astype(self.dtype)
            except RuntimeWarning:  # an overflow, where warnings are errors: it becomes inf,
                with np.errstate(over="ignore"):  # which the finiteness check then names
                    return array.astype(self.dtype)
        try:
            return array.astype(self.dtype)
        except (ValueError, TypeError):
            return array

    def _check_shape(self, array: np.ndarray) -> np.ndarray:
        if not self.enforce_shape:
            return array
        expected = self.shape
        assert expected is not None
        if array.size == 0 and array.ndim == 1 and len(expected) > 1 and -1 not in expected[1:]:
            array = array.reshape((0, *expected[1:]))  # "[]" is an empty batch of rows
        if array.ndim != len(expected):
            raise BadInput(f"expected a {len(expected)}-dimensional array of shape "
                           f"{_shape_text(expected)}, got {array.ndim} dimension(s) "
                           f"{tuple(array.shape)}",
                           [field_error(["body"], f"expected {len(expected)} dimensions, got "
                                        f"{array.ndim}", "shape_error")])
        detail = [field_error(["body", f"axis {axis}"], f"has {size} element(s), expected {want}",
                              "shape_error")
                  for axis, (size, want) in enumerate(zip(array.shape, expected, strict=True))
                  if want != -1 and size != want]
        if detail:
            raise BadInput(f"expected shape {_shape_text(expected)}, got {tuple(array.shape)}",
                           detail)
        return array

    def from_array(self, array: np.ndarray) -> np.ndarray:
        """The value for an array that arrived as an array (a tensor of the Open Inference
        Protocol): the same dtype, finiteness and shape checks as a body gets."""
        if (self.enforce_dtype and self.dtype is not None and self.dtype.kind in _NUMBER_KINDS
                and array.dtype.kind == "b" and array.size):
            raise BadInput(f"expected an array of {self.dtype}, got booleans; send numbers, or "
                           "declare dtype=bool for an array of flags",
                           [field_error(["body"], f"boolean where a number ({self.dtype}) was "
                                        "expected", "dtype_error")])
        return self._check(array, self._finite)

    # ----- writing ------------------------------------------------------------------------

    def output_array(self, value: Any) -> np.ndarray:
        """The API's return value as the array this output writes, checked against the
        descriptor's dtype and shape (``InvalidOutput`` when it does not fit)."""
        array = value if isinstance(value, np.ndarray) else _as_array(value)
        try:
            if self.dtype is not None and self.enforce_dtype and array.dtype != self.dtype:
                array = self._convert(array)
            self._check_shape(array)
        except BadInput as error:
            raise InvalidOutput(f"the API returned an array that does not match its output "
                                f"descriptor: {error}") from None
        return array

    def render(self, value: Any, media_type: str) -> tuple[bytes, str]:
        array = self.output_array(value)
        if media_type == NPY_MEDIA_TYPE and not array.dtype.hasobject:
            return dump_npy(array), NPY_MEDIA_TYPE
        return dumps(array), JSON_MEDIA_TYPE

    # ----- describing ---------------------------------------------------------------------

    def schema(self) -> dict[str, Any]:
        return dict(self._schema)

    def openapi_response(self) -> dict[str, Any]:
        response = super().openapi_response()
        response["content"][JSON_MEDIA_TYPE]["schema"] = dict(self._output_schema)
        return response

    def example(self) -> Any:
        if self.sample is None:
            return None
        sample = self.sample[:_EXAMPLE_ROWS] if self.sample.ndim else self.sample
        return dumps_roundtrip(sample.tolist())

    def to_spec(self) -> dict[str, Any]:
        return {"type": "NumpyNdarray", "dtype": None if self.dtype is None else self.dtype.str,
                "shape": None if self.shape is None else list(self.shape),
                "enforce_dtype": self.enforce_dtype, "enforce_shape": self.enforce_shape,
                "allow_nonfinite": self.allow_nonfinite}


def load_npy(body: bytes | bytearray) -> np.ndarray:
    """Read a ``.npy`` body without pickle, sharing the body's memory when it can."""
    if len(body) < 10 or body[:6] != _NPY_MAGIC:
        raise BadInput("the body is not a .npy file (it should start with \\x93NUMPY); write it "
                       "with numpy.save, or send JSON with Content-Type: application/json",
                       [field_error(["body"], "bad .npy magic", "npy_invalid")])
    # Only the header is copied into the stream; the data stays where it is.
    stream = io.BytesIO(bytes(body[:_NPY_HEADER_LIMIT]))
    try:
        major, _minor = np.lib.format.read_magic(stream)
        if major == 1:
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
        elif major == 2:
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f".npy format version {major} is not supported; use 1.0 or 2.0")
    # The header is a Python literal read by numpy's safe_eval, which raises whatever the
    # literal makes it raise: any of these means the client sent a header numpy cannot read.
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError, OverflowError,
            tokenize.TokenError) as error:
        raise _npy_error(f"the .npy header is malformed: {error}; write the file with "
                         "numpy.save", str(error)) from None
    if any(size < 0 for size in shape):
        raise _npy_error(f"the .npy header's shape {shape} has a negative size; every size "
                         "must be 0 or more", "negative size in shape")
    if dtype.itemsize == 0:
        raise _npy_error(f"the .npy dtype {dtype} has no bytes per item; send a sized dtype "
                         "such as float32 or S8", "zero-size dtype")
    if dtype.hasobject:
        raise BadInput("the .npy array holds Python objects, which only pickle can read; "
                       "dosirak never unpickles request data: send numbers or strings",
                       [field_error(["body"], f"object dtype {dtype}", "npy_invalid")])
    offset = stream.tell()
    count = math.prod(shape)  # Python ints: a shape like (2**32, 2**32) cannot overflow
    expected = count * dtype.itemsize
    if len(body) - offset != expected:
        raise BadInput(f"the .npy data is {len(body) - offset} bytes but its header describes "
                       f"{expected} bytes (shape {shape}, dtype {dtype}); the body may be "
                       "truncated", [field_error(["body"], "data length does not match header",
                                                 "npy_invalid")])
    array = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
    array = array.reshape(shape, order="F" if fortran_order else "C")
    # A bytes body gives a read-only view; API code may write to its input, so copy then.
    return array if array.flags.writeable else array.copy()


def _npy_error(message: str, short: str) -> BadInput:
    return BadInput(message, [field_error(["body"], short, "npy_invalid")])


def _refuse_nonfinite(array: np.ndarray) -> None:
    """Raise ``BadInput`` naming the first NaN or infinity of a float or complex array."""
    finite = np.isfinite(array)
    if finite.all():
        return
    place = [int(index) for index in np.unravel_index(int(np.argmin(finite)), array.shape)]
    where = "".join(f"[{index}]" for index in place) or "the value"
    raise BadInput(f"the array holds {array[tuple(place)]} at {where}: this API needs finite "
                   "numbers (a NaN, an infinity, or a number too large for "
                   f"{array.dtype}); send finite values, or declare allow_nonfinite=True",
                   [field_error(["body", *place], "not a finite number", "finite_number")])


def dump_npy(array: np.ndarray) -> bytes:
    """The ``.npy`` (format 1.0) bytes of ``array``, copying the data once."""
    header = np.lib.format.header_data_from_array_1_0(array)
    stream = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(stream, header)
    except ValueError:  # a header over 64 KiB (huge structured dtypes) needs format 2.0
        stream = io.BytesIO()
        np.lib.format.write_array(stream, array, allow_pickle=False)
        return stream.getvalue()
    if array.size == 0:
        return stream.getvalue()
    # Fortran-ordered data is written as is: its transpose is C-contiguous with the same bytes.
    data = array.T if header["fortran_order"] else np.ascontiguousarray(array)
    return b"".join((stream.getvalue(), memoryview(data).cast("B")))  # type: ignore[arg-type]


def dumps_roundtrip(value: Any) -> Any:
    """``value`` as it reads back from JSON (NaN becomes None), for docs examples."""
    return loads(dumps(value))


def _as_array(value: Any) -> np.ndarray:
    if hasattr(value, "to_numpy"):  # pandas objects
        return value.to_numpy()
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as error:
        raise InvalidOutput(f"the API returned {type(value).__name__}, which is not an array "
                            f"({error}); return a numpy array") from None


def _first_bool(value: Any) -> list[int] | None:
    """The index path of the first ``bool`` in nested lists, or None when there is none."""
    if type(value) is bool:
        return []
    if type(value) is not list:
        return None
    kinds = set(map(type, value))  # one C-level pass per list, not a Python step per number
    if bool in kinds:
        return [next(index for index, item in enumerate(value) if type(item) is bool)]
    if list in kinds:
        for index, item in enumerate(value):
            found = _first_bool(item) if type(item) is list else None
            if found is not None:
                return [index, *found]
    return None


def _same_kind(array: np.ndarray, dtype: np.dtype) -> bool:
    if dtype.kind in "iu" and array.dtype.kind in "iu":
        # Integers into integers: JSON integers parse as int64, never "the same kind" as an
        # unsigned dtype, so the values decide (the range check), not the kinds.
        if np.can_cast(array.dtype, dtype, casting="safe"):
            return True
        info = np.iinfo(dtype)
        return bool(array.min() >= info.min and array.max() <= info.max)
    return bool(np.can_cast(array.dtype, dtype, casting="same_kind"))


def _normalize_shape(shape: Any) -> tuple[int, ...] | None:
    if shape is None:
        return None
    try:
        normalized = tuple(-1 if size is None else int(size) for size in shape)
    except (TypeError, ValueError):
        normalized = None
    check_option(normalized is not None and all(size >= -1 for size in normalized),
                 f"NumpyNdarray: shape must be a tuple of sizes, -1 or None for any size, got "
                 f"{shape!r}")
    return normalized


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join("any" if size == -1 else str(size) for size in shape) + \
        ("," if len(shape) == 1 else "") + ")"


def _ragged_message(error: ValueError) -> str:
    text = str(error)
    marker = "The requested array has an inhomogeneous shape"
    return text[text.index(marker):] if marker in text else text


def _item_schema(dtype: np.dtype | None, finite: bool) -> dict[str, Any]:
    if dtype is None:
        return {}
    kind = dtype.kind
    if kind == "b":
        return {"type": "boolean"}
    if kind in "iu":
        return {"type": "integer", "format": f"{dtype.name}"}
    if kind == "f":
        schema: dict[str, Any] = {"type": "number",
                                  "format": "float" if dtype.itemsize <= 4 else "double"}
        if finite:  # larger numbers would become infinities, which are refused
            largest = float(np.finfo(dtype).max)
            schema.update(minimum=-largest, maximum=largest)
        else:  # NaN and infinities are written as null (strict JSON has no NaN)
            schema["nullable"] = True
        return schema
    if kind in "US":
        return {"type": "string"}
    return {}


def _nested_schema(item: dict[str, Any], shape: tuple[int, ...]) -> dict[str, Any]:
    schema = item
    for size in reversed(shape):
        schema = {"type": "array", "items": schema}
        if size != -1:
            schema["minItems"] = schema["maxItems"] = size
    return schema
