"""The input adapters and outputs of BentoML 0.x services (``from dosirak.adapters import
DataframeInput``), built on dosirak's IO descriptors: see ``dosirak.legacy.inputs`` and
``dosirak.legacy.outputs``."""

from dosirak.legacy.inputs import (
    BaseInputAdapter,
    DataframeInput,
    FileInput,
    ImageInput,
    JsonInput,
    MultiFileInput,
    MultiImageInput,
    StringInput,
    TfTensorInput,
)
from dosirak.legacy.outputs import (
    BaseOutputAdapter,
    DataframeOutput,
    DefaultOutput,
    JsonOutput,
    TfTensorOutput,
)

__all__ = [
    "BaseInputAdapter", "BaseOutputAdapter", "DataframeInput", "DataframeOutput", "DefaultOutput",
    "FileInput", "ImageInput", "JsonInput", "JsonOutput", "MultiFileInput", "MultiImageInput",
    "StringInput", "TfTensorInput", "TfTensorOutput",
]
