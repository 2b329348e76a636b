"""IO descriptors from type annotations, for the class style of services.

    >>> from typing import Annotated
    >>> descriptor_for(Annotated[np.ndarray, Shape((-1, 4)), DType("float32")])
    NumpyNdarray(dtype='<f4', shape=[-1, 4], enforce_dtype=True, enforce_shape=True)

``np.ndarray`` (with ``Shape`` and ``DType`` constraints in ``typing.Annotated``),
``pd.DataFrame``, ``pd.Series``, pydantic models, ``str``, ``PIL.Image.Image``, ``pathlib.Path``
and plain JSON types (``int``, ``float``, ``list[float]``, ``dict[str, Any]``, dataclasses,
TypedDicts) each map to the descriptor the seeds' style would name explicitly, so both styles
describe an API the same way.
"""

from __future__ import annotations

import inspect
import pathlib
import typing
from typing import Annotated, Any

import numpy as np

from dosirak.exceptions import InvalidArgument
from dosirak.io.base import IODescriptor


class Shape:
    """``Annotated[np.ndarray, Shape((-1, 4))]``: the array's shape, -1 for any size."""

    def __init__(self, shape: tuple[int | None, ...]) -> None:
        self.shape = tuple(shape)

    def __repr__(self) -> str:
        return f"Shape({self.shape!r})"


class DType:
    """``Annotated[np.ndarray, DType("float32")]``: the array's dtype."""

    def __init__(self, dtype: Any) -> None:
        self.dtype = np.dtype(dtype)

    def __repr__(self) -> str:
        return f"DType({self.dtype.name!r})"


def descriptor_for(annotation: Any, *, output: bool = False) -> IODescriptor:
    """The IO descriptor for a parameter (or, with ``output``, a return) annotation."""
    from dosirak.io.file import File
    from dosirak.io.json import JSON
    from dosirak.io.numpy import NumpyNdarray
    from dosirak.io.text import Text

    metadata: tuple[Any, ...] = ()
    if typing.get_origin(annotation) is Annotated:
        annotation, *rest = typing.get_args(annotation)
        metadata = tuple(rest)
    if isinstance(annotation, IODescriptor):
        return annotation
    if annotation in (inspect.Parameter.empty, inspect.Signature.empty, Any, None, type(None)):
        return JSON()
    if annotation is np.ndarray or typing.get_origin(annotation) is np.ndarray:
        return _array_descriptor(NumpyNdarray, annotation, metadata)
    module = getattr(annotation, "__module__", "") or ""
    if module.startswith("pandas"):
        from dosirak.io.pandas import PandasDataFrame, PandasSeries

        if getattr(annotation, "__name__", "") == "DataFrame":
            return PandasDataFrame()
        if getattr(annotation, "__name__", "") == "Series":
            return PandasSeries()
    if module.startswith("PIL") and getattr(annotation, "__name__", "") == "Image":
        from dosirak.io.image import Image

        return Image()
    if annotation is str:
        return Text()
    if isinstance(annotation, type) and issubclass(annotation, pathlib.PurePath):
        return File() if output else File(kind="path")
    if annotation in (bytes, bytearray):
        return File()
    if annotation in (dict, list) or output:
        return JSON()  # outputs are written, not validated: any JSON-encodable value will do
    try:
        return JSON(pydantic_model=annotation)
    except InvalidArgument as error:
        raise InvalidArgument(f"no IO descriptor fits the annotation {annotation!r} ({error}); "
                              "annotate with np.ndarray, pd.DataFrame, a pydantic model, str, "
                              "PIL.Image.Image, pathlib.Path or JSON types, or pass input= / "
                              "output= descriptors explicitly") from None


def _array_descriptor(cls: Any, annotation: Any, metadata: tuple[Any, ...]) -> IODescriptor:
    dtype = shape = None
    # np.ndarray[Any, np.dtype[np.float32]] carries a dtype in its type arguments.
    arguments = typing.get_args(annotation)
    if len(arguments) == 2:
        dtype_arguments = typing.get_args(arguments[1])
        if dtype_arguments and dtype_arguments[0] is not Any:
            dtype = np.dtype(dtype_arguments[0])
    for item in metadata:
        if isinstance(item, Shape):
            shape = item.shape
        elif isinstance(item, DType):
            dtype = item.dtype
    return cls(dtype=dtype, shape=shape, enforce_dtype=dtype is not None,
               enforce_shape=shape is not None)
