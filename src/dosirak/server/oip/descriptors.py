"""Each API as a model of the Open Inference Protocol: its tensors, from its IO descriptors.

    >>> model = ApiModel(svc.apis["classify"])
    >>> model.metadata()["inputs"]
    [{"name": "input_series", "datatype": "FP64", "shape": [-1]}]

Inputs are named after the API function's parameters; a ``PandasDataFrame`` takes one tensor per
column, named after the column. Results are one tensor named ``output``, except a DataFrame's: one
tensor per column, named after it (``output_N`` for the Nth column when columns are not names),
and a ``Multipart``'s: one per field. ``NumpyNdarray`` states its dtype and shape (``-1`` for a
free size; a descriptor without a dtype accepts every datatype and states ``FP64``, the type of
JSON numbers); text, JSON, files and images are ``BYTES`` tensors of one element, read and
written by the descriptor itself (so its checks and limits apply), the element's bytes being the
body the API's own route would take (``parameters.content_type`` may name its media type).

The values the API function receives pass the same descriptor checks (dtype, shape, finiteness)
as a body on the API's own route.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from dosirak.exceptions import BadInput
from dosirak.io.base import InvalidOutput, IODescriptor
from dosirak.io.multipart import Multipart
from dosirak.io.numpy import NumpyNdarray
from dosirak.server.oip.codec import Tensor
from dosirak.server.oip.datatypes import BYTES, declared_datatype
from dosirak.services import InferenceAPI

#: The one version every API model has.
VERSION = "1"
#: A result tensor: name, array, parameters.
Output = tuple[str, np.ndarray, dict[str, Any] | None]


def _pandas_kind(descriptor: IODescriptor) -> str | None:
    name = type(descriptor).__name__
    module = type(descriptor).__module__
    return name if module == "dosirak.io.pandas" else None


class ApiModel:
    """An API seen as a model: its tensor metadata, and the conversions both ways."""

    def __init__(self, api: InferenceAPI) -> None:
        self.api = api
        self.name = api.name
        descriptor = api.input
        if isinstance(descriptor, Multipart):
            self.inputs = [_input(field, name) for name, field in descriptor.fields.items()]
            self.fields: list[str] | None = list(descriptor.fields)
            self.optional = descriptor.optional
        else:
            self.inputs = [_input(descriptor, _parameter_name(api))]
            self.fields = None
            self.optional = frozenset()
        self.output = _output_for(api.output, "output")
        self._names = frozenset(self._input_names())
        # The common model: one input of one tensor (an array, a text...), named after the
        # parameter. Its requests skip the general matching of tensors to inputs below.
        single = self.inputs[0] if self.fields is None and len(self.inputs) == 1 else None
        self._single = single if single is not None and single.names is not None and \
            len(single.names) == 1 else None
        self._single_name = self._single.names[0] if self._single is not None else None

    def metadata(self) -> dict[str, Any]:
        """The model metadata document (``GET /v2/models/NAME``)."""
        inputs = [spec for mapping in self.inputs for spec in mapping.metadata()]
        return {"name": self.name, "versions": [VERSION], "platform": "dosirak",
                "inputs": inputs, "outputs": self.output.metadata()}

    def value(self, tensors: dict[str, Tensor]) -> Any:
        """The value the API function takes, from a request's input tensors."""
        if self._single is not None and len(tensors) == 1 and self._single_name in tensors:
            try:
                return self._single.value(tensors)
            except BadInput as error:
                raise _named(error, self._single_name) from None
        if all(mapping.names is not None for mapping in self.inputs):
            unknown = [name for name in tensors if name not in self._names]
            if unknown:
                raise BadInput(f"model {self.name!r} has no input {unknown[0]!r}; its inputs "
                               f"are: {', '.join(self._input_names())}")
        taken: set[str] = set()
        values = {}
        for index, mapping in enumerate(self.inputs):
            field = self.fields[index] if self.fields is not None else None
            names = mapping.names
            if names is None:  # a DataFrame of undeclared columns takes every tensor
                names = [name for name in tensors if name not in taken]
            mine = {name: tensors[name] for name in names if name in tensors}
            if len(mine) < len(names):
                if field in self.optional and not mine:
                    continue  # the function's default applies
                missing = next(name for name in names if name not in mine)
                raise BadInput(f"model {self.name!r} needs input {missing!r}; its inputs are: "
                               f"{', '.join(self._input_names())}")
            if not mine:
                raise BadInput(f"model {self.name!r} needs at least one input tensor")
            taken.update(mine)
            try:
                values[field] = mapping.value(mine)
            except BadInput as error:
                if len(mine) != 1:
                    raise
                raise _named(error, next(iter(mine))) from None
        unknown = [name for name in tensors if name not in taken]
        if unknown:
            raise BadInput(f"model {self.name!r} has no input {unknown[0]!r}; its inputs are: "
                           f"{', '.join(self._input_names()) or '(any column names)'}")
        return values[None] if self.fields is None else values

    def outputs(self, result: Any) -> list[Output]:
        """The result tensors of the API's return value."""
        return self.output.tensors(result)

    def _input_names(self) -> list[str]:
        return [spec["name"] for mapping in self.inputs for spec in mapping.metadata()]


def _named(error: BadInput, name: str) -> BadInput:
    """``error`` of the one tensor ``name``, its message naming the tensor."""
    if str(error).startswith("input "):
        return error
    return BadInput(f"input {name!r}: {error}", error.detail)


def _parameter_name(api: InferenceAPI) -> str:
    try:
        parameters = [p.name for p in inspect.signature(api.function).parameters.values()
                      if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    except (TypeError, ValueError):
        parameters = []
    if parameters and parameters[0] == "self":
        parameters = parameters[1:]
    return parameters[0] if parameters else "input"


# ----- inputs ---------------------------------------------------------------------------------


class _Input:
    """How some input tensors become one value of the API's input."""

    #: The tensor names it takes; None: any (columns of a DataFrame that declares none).
    names: list[str] | None

    def metadata(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def value(self, tensors: dict[str, Tensor]) -> Any:
        raise NotImplementedError


def _by_kind(descriptor: IODescriptor, name: str, kinds: tuple[Any, Any, Any, Any]) -> Any:
    """``kinds`` (array, frame, series, whole body) built for the kind of ``descriptor``."""
    array, frame, series, body = kinds
    if isinstance(descriptor, NumpyNdarray):
        return array(descriptor, name)
    kind = _pandas_kind(descriptor)
    if kind == "PandasDataFrame":
        return frame(descriptor)
    if kind == "PandasSeries":
        return series(descriptor, name)
    return body(descriptor, name)


def _input(descriptor: IODescriptor, name: str) -> _Input:
    return _by_kind(descriptor, name, (_ArrayInput, _FrameInput, _SeriesInput, _BytesInput))


def _shape(shape: Any) -> list[int]:
    return [int(size) for size in shape] if shape is not None else [-1]


def _as_text(array: np.ndarray) -> np.ndarray:
    """A BYTES tensor as an array of str (UTF-8), or of bytes where it is not text."""
    try:
        return np.array([bytes(item).decode("utf-8") for item in array.reshape(-1)],
                        dtype=str).reshape(array.shape)
    except UnicodeDecodeError:
        return array.astype(bytes)


class _OneTensor(_Input):
    """An input of one tensor, named after the parameter."""

    def __init__(self, descriptor: Any, name: str, datatype: str, shape: list[int]) -> None:
        self.descriptor = descriptor
        self.names = [name]
        self.spec = {"name": name, "datatype": datatype, "shape": shape}

    def metadata(self) -> list[dict[str, Any]]:
        return [self.spec]

    def array(self, tensors: dict[str, Tensor]) -> tuple[Tensor, np.ndarray]:
        """The tensor, and its array (BYTES read as text)."""
        tensor = tensors[self.spec["name"]]
        array = _as_text(tensor.array) if tensor.datatype == BYTES else tensor.array
        return tensor, array


class _ArrayInput(_OneTensor):
    def __init__(self, descriptor: NumpyNdarray, name: str) -> None:
        super().__init__(descriptor, name, declared_datatype(descriptor.dtype),
                         _shape(descriptor.shape))

    def value(self, tensors: dict[str, Tensor]) -> Any:
        return self.descriptor.from_array(self.array(tensors)[1])


def _column_specs(descriptor: Any) -> list[dict[str, Any]]:
    """One tensor per declared column of a DataFrame descriptor, with its dtype."""
    dtype = descriptor.dtype
    return [{"name": str(column),
             "datatype": declared_datatype(dtype.get(column) if isinstance(dtype, dict)
                                           else dtype),
             "shape": [-1]}
            for column in descriptor.columns or []]


class _FrameInput(_Input):
    def __init__(self, descriptor: Any) -> None:
        self.descriptor = descriptor
        self.names = list(descriptor.columns) if descriptor.columns is not None else None
        self.specs = _column_specs(descriptor)

    def metadata(self) -> list[dict[str, Any]]:
        return self.specs

    def value(self, tensors: dict[str, Tensor]) -> Any:
        import pandas as pd

        columns = {}
        rows = None
        for name, tensor in tensors.items():
            array = tensor.array
            if array.ndim == 2 and array.shape[1] == 1:
                array = array[:, 0]
            if array.ndim != 1:
                raise BadInput(f"input {name!r} is a column: its shape must be [rows] or "
                               f"[rows, 1], got {list(tensor.shape)}")
            if rows is not None and len(array) != rows:
                raise BadInput(f"the columns have different lengths: input {name!r} has "
                               f"{len(array)} rows, the inputs before it {rows}")
            rows = len(array)
            columns[name] = _as_text(array) if tensor.datatype == BYTES else array
        return self.descriptor.from_frame(pd.DataFrame(columns))


class _SeriesInput(_OneTensor):
    def __init__(self, descriptor: Any, name: str) -> None:
        super().__init__(descriptor, name, declared_datatype(descriptor.dtype), [-1])

    def value(self, tensors: dict[str, Tensor]) -> Any:
        tensor, array = self.array(tensors)
        if array.ndim != 1:
            raise BadInput(f"input {tensor.name!r} is a series: its shape must be [length], "
                           f"got {list(tensor.shape)}")
        return self.descriptor.from_json_value(array.tolist())


class _BytesInput(_OneTensor):
    """A descriptor that reads whole bodies (text, JSON, files, images): one BYTES element."""

    def __init__(self, descriptor: IODescriptor, name: str) -> None:
        super().__init__(descriptor, name, BYTES, [1])
        default = descriptor.media_type_for(None) or descriptor.input_media_types[0]
        self.default_type = "application/octet-stream" if "*" in default else default

    def value(self, tensors: dict[str, Tensor]) -> Any:
        tensor = tensors[self.spec["name"]]
        if tensor.datatype != BYTES:
            raise BadInput(f"input {tensor.name!r} is BYTES (the body the API reads), got "
                           f"{tensor.datatype}")
        if tensor.array.size != 1:
            raise BadInput(f"input {tensor.name!r} takes one element (shape [1]), got shape "
                           f"{list(tensor.shape)}")
        data = tensor.array.reshape(-1)[0]
        media_type = self.default_type
        declared = tensor.parameters.get("content_type")
        if isinstance(declared, str) and "/" in declared:
            resolved = self.descriptor.media_type_for(declared.split(";")[0].strip().lower())
            if resolved is None:
                raise BadInput(f"input {tensor.name!r}: content_type {declared!r} is not one "
                               f"this API reads; use one of "
                               f"{list(self.descriptor.input_media_types)}")
            media_type = resolved
        return self.descriptor.parse(data, media_type, {})


# ----- outputs --------------------------------------------------------------------------------


class _Output:
    def metadata(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def tensors(self, result: Any) -> list[Output]:
        raise NotImplementedError


def _output_for(descriptor: IODescriptor, name: str) -> _Output:
    if isinstance(descriptor, Multipart):
        return _MultipartOutput(descriptor)
    return _by_kind(descriptor, name, (_ArrayOutput, _FrameOutput, _SeriesOutput,
                                       _BytesOutput))


class _ArrayOutput(_Output):
    def __init__(self, descriptor: NumpyNdarray, name: str) -> None:
        self.descriptor = descriptor
        self.name = name
        self.spec = {"name": name, "datatype": declared_datatype(descriptor.dtype),
                     "shape": _shape(descriptor.shape)}

    def metadata(self) -> list[dict[str, Any]]:
        return [self.spec]

    def tensors(self, result: Any) -> list[Output]:
        return [(self.name, self.descriptor.output_array(result), None)]


class _SeriesOutput(_Output):
    def __init__(self, descriptor: Any, name: str) -> None:
        self.name = name
        self.spec = {"name": name, "datatype": declared_datatype(descriptor.dtype),
                     "shape": [-1]}

    def metadata(self) -> list[dict[str, Any]]:
        return [self.spec]

    def tensors(self, result: Any) -> list[Output]:
        values = result.to_numpy() if hasattr(result, "to_numpy") else np.asarray(result)
        return [(self.name, _column(values), None)]


def _column(values: np.ndarray) -> np.ndarray:
    """A column as a tensor: object columns of text become BYTES, others keep their dtype."""
    if values.dtype.kind == "O":
        return values
    return np.asarray(values)


class _FrameOutput(_Output):
    def __init__(self, descriptor: Any) -> None:
        self.specs = _column_specs(descriptor)

    def metadata(self) -> list[dict[str, Any]]:
        return self.specs

    def tensors(self, result: Any) -> list[Output]:
        import pandas as pd

        frame = result if isinstance(result, pd.DataFrame) else pd.DataFrame(result)
        named = all(isinstance(column, str) for column in frame.columns) and \
            len(set(frame.columns)) == len(frame.columns)
        return [(column if named else f"output_{index}", _column(frame[column].to_numpy()),
                 None)
                for index, column in enumerate(frame.columns)]


class _BytesOutput(_Output):
    """A descriptor that writes whole bodies: its rendered body as one BYTES element."""

    def __init__(self, descriptor: IODescriptor, name: str) -> None:
        self.descriptor = descriptor
        self.name = name
        self.media_type = descriptor.output_media_types[0]
        self.spec = {"name": name, "datatype": BYTES, "shape": [1]}

    def metadata(self) -> list[dict[str, Any]]:
        return [self.spec]

    def tensors(self, result: Any) -> list[Output]:
        data, content_type = self.descriptor.render(result, self.media_type)
        array = np.empty(1, dtype=object)
        array[0] = data
        return [(self.name, array, {"content_type": content_type})]


class _MultipartOutput(_Output):
    def __init__(self, descriptor: Multipart) -> None:
        self.fields = {name: _output_for(field, name)
                       for name, field in descriptor.fields.items()}

    def metadata(self) -> list[dict[str, Any]]:
        return [spec for output in self.fields.values() for spec in output.metadata()]

    def tensors(self, result: Any) -> list[Output]:
        if not isinstance(result, dict):
            raise InvalidOutput(f"the API returned {type(result).__name__}; a Multipart output "
                                "needs a dict of its fields")
        return [tensor for name, output in self.fields.items()
                for tensor in output.tensors(result[name])]
