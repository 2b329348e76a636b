"""IO descriptors: the typed, validated inputs and outputs of service APIs.

    >>> from dosirak.io import NumpyNdarray, PandasDataFrame, JSON, Text, Image, File, Multipart

Each descriptor parses a request body into the value an API function receives, renders the
function's return value as a response, and describes both in the service's OpenAPI document.
pandas and Pillow are imported only when a descriptor that needs them is created.
"""

from dosirak.io.annotations import DType, Shape, descriptor_for
from dosirak.io.base import IODescriptor
from dosirak.io.file import File, UploadedFile
from dosirak.io.image import Image
from dosirak.io.json import JSON, Json
from dosirak.io.multipart import Multipart
from dosirak.io.numpy import NumpyNdarray
from dosirak.io.pandas import PandasDataFrame, PandasSeries
from dosirak.io.text import Text

__all__ = [
    "JSON", "DType", "File", "IODescriptor", "Image", "Json", "Multipart", "NumpyNdarray",
    "PandasDataFrame", "PandasSeries", "Shape", "Text", "UploadedFile", "descriptor_for",
]
