"""The input adapters of 0.x services, built on dosirak's IO descriptors.

    >>> @api(input=DataframeInput(), batch=True)        # seed 001
    ... def predict(self, df): ...
    >>> @api(input=TfTensorInput(), batch=True)         # seed 004: {"instances": [{"b64": ...}]}
    ... def predict(self, tensor): ...

Each adapter is an IO descriptor whose parsing is done by a dosirak descriptor (``PandasDataFrame``
reads JSON and CSV tables, ``JSON`` JSON, ``Text`` text, ``Image`` and ``File`` uploads,
``Multipart`` forms), so limits, media types, 400s and OpenAPI are the same as everywhere else. A
parsed request is a batch of *rows*: a DataFrame's rows, a tensor request's instances, or one item
(a JSON value, a string, an image, a file). With ``batch=True`` the rows of concurrent requests are
merged by the adaptive dispatcher and the API function gets them all (a DataFrame, a list, a
``tf.Tensor``); each request is answered with its own rows of the result. With ``batch=False`` it
gets one request's value.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from dosirak.exceptions import BadInput, InvalidArgument
from dosirak.io.base import JSON_MEDIA_TYPE, IODescriptor, field_error
from dosirak.io.encoding import loads

_ORIENTS = ("records", "columns", "index", "split", "values")


class LegacyAdapter:
    """Marks the 0.x adapters: ``@dosirak.api`` given one of them means the 0.x decorator."""

    #: PyPI packages the adapter needs, added to the service's environment.
    pip_dependencies: tuple[str, ...] = ()

    @property
    def config(self) -> dict[str, Any]:
        """The adapter's options, as ``bentoml.yml`` records them."""
        return {}


class BaseInputAdapter(LegacyAdapter, IODescriptor):
    """An input adapter: a dosirak descriptor parses the body, ``rows`` makes a batch of it."""

    #: True when one request is one row (its answer is the single item of the result).
    single_item = True

    def __init__(self, descriptor: IODescriptor) -> None:
        self.descriptor = descriptor
        self.input_media_types = descriptor.input_media_types
        self.parse_on_loop_below = descriptor.parse_on_loop_below
        self.needs_cleanup = descriptor.needs_cleanup
        self.python_type = descriptor.python_type

    def parse(self, body: bytes | bytearray, media_type: str, params: dict[str, str]) -> Any:
        return self.rows(self.descriptor.parse(body, media_type, params))

    def from_json_value(self, value: Any) -> Any:
        return self.rows(self.descriptor.from_json_value(value))

    def rows(self, value: Any) -> Any:
        """One request's value as a batch of rows (a list of one item by default)."""
        return [value]

    def batch_argument(self, rows: Any) -> Any:
        """What a ``batch=True`` API function gets for the merged rows."""
        return rows

    def single_argument(self, rows: Any) -> Any:
        """What a ``batch=False`` API function gets for one request's rows."""
        return rows[0] if self.single_item else self.batch_argument(rows)

    def call(self, function: Any, argument: Any) -> Any:
        return function(argument)

    def media_type_for(self, media_type: str | None) -> str | None:
        return self.descriptor.media_type_for(media_type)

    def apply_limits(self, limits: Any) -> None:
        self.descriptor.apply_limits(limits)

    def cleanup(self, value: Any) -> None:
        for item in value if isinstance(value, list) else ():
            self.descriptor.cleanup(item)

    def schema(self) -> dict[str, Any]:
        return self.descriptor.schema()

    def components(self) -> dict[str, dict[str, Any]]:
        return self.descriptor.components()

    def openapi_request_body(self) -> dict[str, Any]:
        return self.descriptor.openapi_request_body()

    def render(self, value: Any, media_type: str) -> tuple[bytes, str]:
        raise InvalidArgument(f"{type(self).__name__} is an input adapter; use an output such "
                              "as DefaultOutput() or JsonOutput() for output=")

    def to_spec(self) -> dict[str, Any]:
        return {"type": type(self).__name__, **self.config}


class DataframeInput(BaseInputAdapter):
    """A ``pandas.DataFrame`` from JSON (``orient``: records, columns, index, split, values; by
    default found from the body's shape: ``[[5.1, 3.5, 1.4, 0.2]]`` is values, ``[{"a": 1}]``
    records) or CSV (``text/csv``). ``columns`` names the columns of values and header-less
    rows; ``dtype`` (one dtype or ``{column: dtype}``) converts them, a 400 when it cannot."""

    single_item = False
    pip_dependencies = ("pandas",)

    def __init__(self, typ: str = "frame", orient: str | None = None,
                 columns: list[str] | None = None, dtype: Any = None,
                 input_dtypes: Any = None, **unused: Any) -> None:
        from dosirak.io.pandas import PandasDataFrame

        if typ != "frame":
            raise InvalidArgument(f"DataframeInput(typ={typ!r}): only typ='frame' is supported "
                                  "(as in BentoML 0.13)")
        if orient is not None and orient not in _ORIENTS:
            raise InvalidArgument(f"DataframeInput: orient must be one of {_ORIENTS} or None "
                                  f"(found from the body), got {orient!r}")
        dtype = dtype if dtype is not None else input_dtypes
        if isinstance(dtype, (list, tuple)):
            dtype = dict(enumerate(dtype))
        if columns is not None and isinstance(dtype, dict) and set(dtype) != set(columns):
            raise InvalidArgument("DataframeInput: dtype must name the same columns as columns=")
        self.typ, self.orient, self.columns, self.dtype = typ, orient, columns, dtype
        self._frames: dict[str, Any] = {}
        for name in _ORIENTS if orient is None else (orient,):
            apply_names = columns is not None and name == "values"
            self._frames[name] = PandasDataFrame(
                orient=name, columns=columns, apply_column_names=apply_names,
                dtype=dtype, enforce_dtype=dtype is not None, allow_nonfinite=True)
        super().__init__(self._frames[orient or "records"])
        if columns is not None:  # header-less CSV rows get the columns too
            self._csv = PandasDataFrame(orient="values", columns=columns,
                                        apply_column_names=True, dtype=dtype,
                                        enforce_dtype=dtype is not None, allow_nonfinite=True)
        else:
            self._csv = self.descriptor

    @property
    def config(self) -> dict[str, Any]:
        return {"orient": self.orient, "typ": self.typ, "dtype": _plain_dtype(self.dtype)}

    def parse(self, body: bytes | bytearray, media_type: str, params: dict[str, str]) -> Any:
        if media_type == JSON_MEDIA_TYPE:
            return self.from_json_value(loads(body))
        return self._csv.parse(body, media_type, params)

    def from_json_value(self, value: Any) -> Any:
        return self._frames[self.orient or _orient_of(value)].from_json_value(value)

    def apply_limits(self, limits: Any) -> None:
        for frame in (*self._frames.values(), self._csv):
            frame.apply_limits(limits)

    def rows(self, value: Any) -> Any:
        return value

    def schema(self) -> dict[str, Any]:
        if self.orient is not None:
            return self.descriptor.schema()
        return {"oneOf": [self._frames["values"].schema(), self._frames["records"].schema(),
                          self._frames["columns"].schema()],
                "description": "a table: a list of rows ([[5.1, 3.5]]), of records "
                               '([{"a": 1}]) or an object of columns; or CSV (text/csv)'}


def _orient_of(value: Any) -> str:
    """The pandas orient a JSON table is written in, as BentoML 0.x guessed it."""
    if isinstance(value, list):
        return "records" if value and all(isinstance(row, dict) for row in value) else "values"
    if isinstance(value, dict):
        if {"columns", "data"} <= set(value):
            return "split"
        return "columns"
    raise BadInput("a table must be a JSON list of rows ([[5.1, 3.5, 1.4, 0.2]]), a list of "
                   'records ([{"a": 1}]) or an object of columns ({"a": {"0": 1}})',
                   [field_error(["body"], "expected a JSON list or object", "type_error")])


def _plain_dtype(dtype: Any) -> Any:
    if isinstance(dtype, dict):
        return {str(key): str(value) for key, value in dtype.items()}
    return None if dtype is None else str(dtype)


class JsonInput(BaseInputAdapter):
    """A JSON value (one per request); with ``batch=True`` the function gets a list of them."""

    def __init__(self, **unused: Any) -> None:
        from dosirak.io.json import JSON

        super().__init__(JSON())


class StringInput(BaseInputAdapter):
    """The request body as a ``str`` (one per request)."""

    def __init__(self, **unused: Any) -> None:
        from dosirak.io.text import Text

        super().__init__(Text())


class ImageInput(BaseInputAdapter):
    """An image (raw bytes, a form upload or ``{"b64": ...}``) as a numpy array of
    ``pilmode`` pixels (``RGB`` by default), as 0.x's imageio gave it."""

    pip_dependencies = ("pillow", "numpy")

    def __init__(self, accept_image_formats: list[str] | None = None, pilmode: str = "RGB",
                 **unused: Any) -> None:
        from dosirak.io.image import Image

        self.accept_image_formats = accept_image_formats
        self.pilmode = pilmode
        super().__init__(Image(pilmode=pilmode))

    @property
    def config(self) -> dict[str, Any]:
        return {"accept_image_formats": self.accept_image_formats, "pilmode": self.pilmode}

    def rows(self, value: Any) -> Any:
        import numpy as np

        return [np.asarray(value)]


class FileInput(BaseInputAdapter):
    """An uploaded file (raw body or a form's file), a file-like object with ``read()`` and
    ``name``."""

    def __init__(self, **unused: Any) -> None:
        from dosirak.io.file import File

        super().__init__(File())


class _MultiInput(BaseInputAdapter):
    """Several named parts of a form; the function gets one keyword argument per name."""

    def __init__(self, input_names: tuple[str, ...] | list[str], part: Any) -> None:
        from dosirak.io.multipart import Multipart

        names = tuple(input_names)
        if not names or not all(isinstance(n, str) and n.isidentifier() for n in names):
            raise InvalidArgument(f"{type(self).__name__}: input_names must be Python "
                                  f"identifiers, got {input_names!r}")
        self.input_names = names
        super().__init__(Multipart(**{name: part() for name in names}))

    @property
    def config(self) -> dict[str, Any]:
        return {"input_names": list(self.input_names)}

    def rows(self, value: Any) -> Any:
        return {name: [self._item(value[name])] for name in self.input_names}

    def _item(self, value: Any) -> Any:
        return value

    def single_argument(self, rows: Any) -> Any:
        return {name: items[0] for name, items in rows.items()}

    def call(self, function: Any, argument: Any) -> Any:
        return function(**argument)

    def cleanup(self, value: Any) -> None:
        self.descriptor.cleanup({name: items[0] for name, items in value.items()})


class MultiImageInput(_MultiInput):
    """Several images of one form (``input_names``), one numpy array each."""

    pip_dependencies = ("pillow", "numpy")

    def __init__(self, input_names: tuple[str, ...] | list[str] = ("image",),
                 pilmode: str = "RGB", **unused: Any) -> None:
        from dosirak.io.image import Image

        self.pilmode = pilmode
        super().__init__(input_names, lambda: Image(pilmode=pilmode))

    def _item(self, value: Any) -> Any:
        import numpy as np

        return np.asarray(value)


class MultiFileInput(_MultiInput):
    """Several files of one form (``input_names``), one file-like object each."""

    def __init__(self, input_names: tuple[str, ...] | list[str] = ("file",),
                 **unused: Any) -> None:
        from dosirak.io.file import File

        super().__init__(input_names, File)


class TfTensorInput(BaseInputAdapter):
    """TensorFlow Serving's REST body: ``{"instances": [...]}`` (one row per instance) or
    ``{"inputs": ...}``; ``{"b64": "..."}`` objects, at any depth, become their bytes. The
    function gets ``tf.constant`` of the instances."""

    single_item = False
    pip_dependencies = ("tensorflow",)
    METHODS = ("predict", "classify", "regress")

    def __init__(self, method: str = "predict", **unused: Any) -> None:
        from dosirak.io.json import JSON

        if method not in self.METHODS:
            raise InvalidArgument(f"TfTensorInput: method must be one of {self.METHODS}, got "
                                  f"{method!r}")
        self.method = method
        super().__init__(JSON())

    @property
    def config(self) -> dict[str, Any]:
        return {"method": self.method}

    def rows(self, value: Any) -> Any:
        if not isinstance(value, dict) or not ({"instances", "inputs"} & set(value)):
            raise BadInput('a tensor request is a JSON object {"instances": [...]} (or '
                           '{"inputs": [...]}), as TensorFlow Serving takes',
                           [field_error(["body"], "expected instances", "type_error")])
        key = "instances" if "instances" in value else "inputs"
        instances = value[key]
        if not isinstance(instances, list) or not instances:
            raise BadInput(f'"{key}" must be a non-empty list, one item per row',
                           [field_error(["body", key], "expected a non-empty list",
                                        "type_error")])
        return [_decode_b64(item, ["body", key, index]) for index, item in enumerate(instances)]

    def batch_argument(self, rows: Any) -> Any:
        import tensorflow as tf

        try:
            return tf.constant(rows)
        except (ValueError, TypeError) as error:
            raise BadInput(f"the instances do not form a tensor: {error}; give every instance "
                           "the same shape and type",
                           [field_error(["body", "instances"], str(error), "type_error")]) \
                from None

    def schema(self) -> dict[str, Any]:
        return {"type": "object", "properties": {
            "signature_name": {"type": "string"},
            "instances": {"type": "array", "items": {}},
            "inputs": {}}}


def _decode_b64(value: Any, loc: list[Any]) -> Any:
    """``value`` with every ``{"b64": "..."}`` object replaced by its bytes."""
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise BadInput(f"{'.'.join(map(str, loc))}: b64 is not valid base64",
                               [field_error([*loc, "b64"], "not base64", "value_error")]) \
                    from None
        return {key: _decode_b64(item, [*loc, key]) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_b64(item, [*loc, index]) for index, item in enumerate(value)]
    return value
