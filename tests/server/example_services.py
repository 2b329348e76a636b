"""Small example services for whole-API tests (schemathesis, the browser): each uses one family
of descriptors with real validation, so every input the schema allows gets an answer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pydantic

import dosirak
from dosirak.io import (
    JSON,
    Multipart,
    NumpyNdarray,
    PandasDataFrame,
    PandasSeries,
    Text,
)


def numpy_service() -> dosirak.Service:
    svc = dosirak.Service("numpy_example")

    @svc.api(input=NumpyNdarray(dtype="float64", shape=(-1, 4), enforce_dtype=True,
                                enforce_shape=True),
             output=NumpyNdarray(dtype="float64", shape=(-1,), enforce_shape=True))
    def row_sums(rows: np.ndarray) -> np.ndarray:
        """Sum each row of four measurements."""
        return rows.sum(axis=1)

    @svc.api(input=NumpyNdarray.from_sample(np.array([[1, 2, 3]], dtype=np.int64),
                                            enforce_dtype=True),
             output=NumpyNdarray(), route="/v2/models/doubler/infer")
    def double(values: np.ndarray) -> np.ndarray:
        """Double every value."""
        return values * 2

    return svc


def pandas_service() -> dosirak.Service:
    svc = dosirak.Service("pandas_example")

    @svc.api(input=PandasDataFrame(columns=["a", "b"], dtype={"a": "float64", "b": "float64"},
                                   enforce_dtype=True, shape=(-1, 2), enforce_shape=True),
             output=PandasSeries(dtype="float64"))
    def add_columns(df: pd.DataFrame) -> pd.Series:
        """Add column a to column b."""
        return df["a"] + df["b"]

    @svc.api(input=PandasSeries(dtype="float64", enforce_dtype=True),
             output=PandasDataFrame())
    def describe(series: pd.Series) -> pd.DataFrame:
        """Count and mean of a series."""
        return pd.DataFrame([{"count": int(series.count()),
                              "mean": float(series.mean()) if len(series) else 0.0}])

    return svc


class Flower(pydantic.BaseModel):
    """Measurements of one iris flower, in centimetres."""

    sepal_length: float = pydantic.Field(gt=0, lt=100)
    sepal_width: float = pydantic.Field(gt=0, lt=100)
    name: str | None = pydantic.Field(default=None, max_length=50)


class Area(pydantic.BaseModel):
    area: float
    name: str | None


def json_service() -> dosirak.Service:
    svc = dosirak.Service("json_example")

    @svc.api(input=JSON(pydantic_model=Flower), output=JSON(pydantic_model=Area))
    def sepal_area(flower: Flower) -> Area:
        """The sepal's area."""
        return Area(area=flower.sepal_length * flower.sepal_width, name=flower.name)

    @svc.api(input=Text(), output=Text())
    def shout(text: str) -> str:
        """Upper-case text."""
        return text.upper()

    return svc


def multipart_service() -> dosirak.Service:
    svc = dosirak.Service("multipart_example")

    @svc.api(input=Multipart(rows=NumpyNdarray(dtype="float64", shape=(-1, 2),
                                               enforce_dtype=True, enforce_shape=True),
                             flower=JSON(pydantic_model=Flower)),
             output=JSON())
    def scaled(rows: np.ndarray, flower: Flower) -> dict[str, Any]:
        """Scale rows by the flower's sepal length."""
        return {"rows": (rows * flower.sepal_length).tolist(), "name": flower.name}

    return svc


EXAMPLES = {"numpy": numpy_service, "pandas": pandas_service, "json": json_service,
            "multipart": multipart_service}
