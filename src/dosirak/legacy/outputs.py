"""The outputs of 0.x services: JSON answers in BentoML 0.x's shapes.

    >>> @api(input=DataframeInput(), output=DefaultOutput(), batch=True)

A ``batch=True`` API returns one result per row of the merged batch; each request gets its own
rows back: a list for a table or tensor request (``[[5.1, 3.5, 1.4, 0.2]]`` -> ``[0]``), the
single item for a one-item request (a JSON value, a string, an image). Rendering is dosirak's
JSON encoder (numpy arrays and scalars, pandas objects), writing strict JSON.
"""

from __future__ import annotations

import copy
from typing import Any

from dosirak.exceptions import InvalidArgument
from dosirak.io.base import JSON_MEDIA_TYPE, InvalidOutput, IODescriptor
from dosirak.io.encoding import dumps
from dosirak.legacy.inputs import LegacyAdapter

_ORIENTS = ("records", "columns", "index", "split", "values", "table")


class BaseOutputAdapter(LegacyAdapter, IODescriptor):
    """An output: ``rows`` readies a batch result for splitting, ``render`` writes a part."""

    output_media_types = (JSON_MEDIA_TYPE,)
    #: Set per API: the answer of a one-item request is the single row of its part.
    unwrap = False

    def __init__(self, cors: str | None = "*", **unused: Any) -> None:
        self.cors = cors

    def for_api(self, unwrap: bool) -> BaseOutputAdapter:
        """This output as one API uses it (a copy: one instance may serve several APIs)."""
        own = copy.copy(self)
        own.unwrap = unwrap
        return own

    def rows(self, result: Any) -> Any:
        """A batch function's result in a form the dispatcher splits by rows."""
        if type(result).__module__.startswith("tensorflow"):
            result = result.numpy()
        if isinstance(result, tuple):
            result = list(result)
        return result

    def render(self, value: Any, media_type: str) -> tuple[bytes, str]:
        if self.unwrap:
            value = value[0] if not hasattr(value, "iloc") else value.iloc[0]
        try:
            return self.encode(value), JSON_MEDIA_TYPE
        except TypeError as error:
            raise InvalidOutput(f"{type(self).__name__} cannot write the API's result: "
                                f"{error}") from None

    def encode(self, value: Any) -> bytes:
        return dumps(value)

    def schema(self) -> dict[str, Any]:
        return {}

    def parse(self, body: bytes | bytearray, media_type: str, params: dict[str, str]) -> Any:
        raise InvalidArgument(f"{type(self).__name__} is an output; use an input adapter such "
                              "as DataframeInput() for input=")

    def to_spec(self) -> dict[str, Any]:
        return {"type": type(self).__name__, **self.config}


class DefaultOutput(BaseOutputAdapter):
    """JSON of whatever the function returns (numpy, pandas, lists, dicts, numbers)."""


class JsonOutput(BaseOutputAdapter):
    """JSON of the function's result."""


class DataframeOutput(BaseOutputAdapter):
    """A DataFrame (or anything pandas makes one of) as JSON in ``output_orient`` layout
    (``records`` by default)."""

    pip_dependencies = ("pandas",)

    def __init__(self, output_orient: str = "records", cors: str | None = "*",
                 **unused: Any) -> None:
        if output_orient not in _ORIENTS:
            raise InvalidArgument(f"DataframeOutput: output_orient must be one of {_ORIENTS}, "
                                  f"got {output_orient!r}")
        super().__init__(cors)
        self.output_orient = output_orient

    @property
    def config(self) -> dict[str, Any]:
        return {"output_orient": self.output_orient}

    def encode(self, value: Any) -> bytes:
        import pandas as pd

        frame = value if isinstance(value, pd.DataFrame) else pd.DataFrame(value)
        return frame.to_json(orient=self.output_orient).encode("utf-8")


class TfTensorOutput(BaseOutputAdapter):
    """A ``tf.Tensor`` (or numpy array) as nested JSON lists."""

    pip_dependencies = ("tensorflow",)
