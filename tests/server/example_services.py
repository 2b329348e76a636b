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
    Image,
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

    # The shape is enforced: unchecked, it would accept arrays the schema cannot state
    # exactly (any number of dimensions, but never ragged), so fuzzing could not judge it.
    @svc.api(input=NumpyNdarray.from_sample(np.array([[1, 2, 3]], dtype=np.int64),
                                            enforce_dtype=True, enforce_shape=True),
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
        with np.errstate(over="ignore"):  # past the double range is inf, written as null
            scaled = rows * flower.sepal_length
        return {"rows": scaled.tolist(), "name": flower.name}

    return svc


def iris_service() -> dosirak.Service:
    """The seeds' iris classifier: a real scikit-learn model behind a batching runner."""
    from sklearn import datasets
    from sklearn.linear_model import LogisticRegression

    iris = datasets.load_iris()
    clf = LogisticRegression(max_iter=1000, random_state=0).fit(iris.data, iris.target)
    model = dosirak.sklearn.save_model("iris_clf", clf, signatures={
        "predict": {"batchable": True, "batch_dim": 0}})
    runner = model.to_runner()
    svc = dosirak.Service("iris_example", runners=[runner])

    @svc.api(input=NumpyNdarray(dtype="float64", shape=(-1, 4), enforce_dtype=True,
                                enforce_shape=True), output=NumpyNdarray())
    def classify(rows: np.ndarray) -> np.ndarray:
        """The iris class of each row of four measurements."""
        return runner.predict.run(rows)

    return svc


def image_service() -> dosirak.Service:
    from PIL import Image as PILImage

    svc = dosirak.Service("image_example")

    @svc.api(input=Image(pilmode="L"), output=JSON())
    def brightness(image: PILImage.Image) -> dict[str, Any]:
        """Size and mean brightness of a grey-scale image."""
        pixels = np.asarray(image, dtype=np.float64)
        return {"width": image.width, "height": image.height,
                "mean": float(pixels.mean()) if pixels.size else 0.0}

    @svc.api(input=Image(), output=Image(mime_type="image/png"))
    def flip(image: PILImage.Image) -> PILImage.Image:
        """The image upside down."""
        return image.transpose(PILImage.Transpose.FLIP_TOP_BOTTOM)

    return svc


EXAMPLES = {"numpy": numpy_service, "pandas": pandas_service, "json": json_service,
            "multipart": multipart_service, "iris": iris_service, "image": image_service}
