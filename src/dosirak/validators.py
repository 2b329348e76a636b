"""Constraints on class-style API parameters, as ``typing.Annotated`` metadata (BentoML 1.2).

    >>> from typing import Annotated
    >>> from dosirak.validators import ContentType, DataframeSchema, DType, Shape
    >>> @dosirak.api
    ... def classify(self, x: Annotated[np.ndarray, Shape((-1, 4)), DType("float32")]): ...
    >>> @dosirak.api
    ... def score(self, table: Annotated[pd.DataFrame, DataframeSchema(columns=["a", "b"])]): ...
    >>> @dosirak.api
    ... def caption(self, image: Annotated[Path, ContentType("image/jpeg")]) -> str: ...

Each becomes an option of the parameter's IO descriptor (``dosirak.io.annotations``), so the
constraint is checked on every request (400 for a wrong shape or dtype or missing columns, 415
for another media type) and shown in the OpenAPI document.
"""

from dosirak.io.annotations import ContentType, DataframeSchema, DType, Shape

__all__ = ["ContentType", "DType", "DataframeSchema", "Shape"]
