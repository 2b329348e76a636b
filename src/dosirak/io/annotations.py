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


class DataframeSchema:
    """``Annotated[pd.DataFrame, DataframeSchema(orient="records", columns=["a", "b"])]``: the
    table's JSON layout, columns (in order, required) and column dtypes."""

    def __init__(self, orient: str = "records", columns: list[str] | None = None,
                 dtype: Any = None) -> None:
        self.orient = orient
        self.columns = list(columns) if columns is not None else None
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"DataframeSchema(orient={self.orient!r}, columns={self.columns!r})"


class ContentType:
    """``Annotated[Path, ContentType("image/jpeg")]``: the media type a file body must have
    (``image/*`` for any image); a body of another type is refused with 415."""

    def __init__(self, content_type: str) -> None:
        if not isinstance(content_type, str) or content_type.count("/") != 1:
            raise InvalidArgument(f"ContentType needs a media type like 'image/jpeg', got "
                                  f"{content_type!r}")
        self.content_type = content_type.lower()

    def __repr__(self) -> str:
        return f"ContentType({self.content_type!r})"


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
            schema = next((m for m in metadata if isinstance(m, DataframeSchema)), None)
            if schema is None:
                return PandasDataFrame()
            named = schema.columns is not None
            return PandasDataFrame(orient=schema.orient, columns=schema.columns,
                                   dtype=schema.dtype, enforce_dtype=schema.dtype is not None,
                                   # every column named must be there; rows of bare values
                                   # get the names
                                   enforce_shape=named,
                                   apply_column_names=named and schema.orient == "values")
        if getattr(annotation, "__name__", "") == "Series":
            return PandasSeries()
    if module.startswith("PIL") and getattr(annotation, "__name__", "") == "Image":
        from dosirak.io.image import Image

        return Image()
    if annotation is str:
        return Text()
    if isinstance(annotation, type) and issubclass(annotation, pathlib.PurePath):
        return _file(File(kind="path") if not output else File(), metadata)
    if annotation in (bytes, bytearray):
        return _file(File(), metadata)
    if annotation in (dict, list) or output:
        return JSON()  # outputs are written, not validated: any JSON-encodable value will do
    try:
        return JSON(pydantic_model=annotation)
    except InvalidArgument as error:
        raise InvalidArgument(f"no IO descriptor fits the annotation {annotation!r} ({error}); "
                              "annotate with np.ndarray, pd.DataFrame, a pydantic model, str, "
                              "PIL.Image.Image, pathlib.Path or JSON types, or pass input= / "
                              "output= descriptors explicitly") from None


def _file(descriptor: IODescriptor, metadata: tuple[Any, ...]) -> IODescriptor:
    """A File descriptor narrowed to the media type a ``ContentType`` annotation names."""
    wanted = next((m for m in metadata if isinstance(m, ContentType)), None)
    if wanted is None:
        return descriptor
    descriptor.mime_type = wanted.content_type  # type: ignore[attr-defined]
    descriptor.input_media_types = (wanted.content_type, "multipart/form-data")
    if "*" not in wanted.content_type:
        descriptor.output_media_types = (wanted.content_type,)
    return descriptor


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
