"""Services the client tests call, and a recorder of what reached the server.

Every API is plain code over real descriptors (and, for iris, a real scikit-learn model through
a runner), so a test can call the same function directly and compare.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image as PILImage
from sklearn import datasets
from sklearn.linear_model import LogisticRegression

import dosirak
from dosirak.io import (
    JSON,
    File,
    Image,
    Multipart,
    NumpyNdarray,
    PandasDataFrame,
    PandasSeries,
    Text,
    UploadedFile,
)
from server.example_services import Area, Flower


def save_iris() -> LogisticRegression:
    """Train the seed's iris classifier and save it as ``iris_clf`` in the current store."""
    iris = datasets.load_iris()
    clf = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
    dosirak.sklearn.save_model("iris_clf", clf)
    return clf


def iris_service() -> dosirak.Service:
    """The seed's iris classifier: a NumpyNdarray API over the runner of ``iris_clf``."""
    runner = dosirak.sklearn.get("iris_clf:latest").to_runner()
    svc = dosirak.Service("iris_classifier", runners=[runner])

    @svc.api(input=NumpyNdarray(), output=NumpyNdarray())
    def classify(input_series: np.ndarray) -> np.ndarray:
        """Classify iris flowers from four measurements each."""
        return runner.predict.run(input_series)

    @svc.api(input=NumpyNdarray(), output=NumpyNdarray())
    async def classify_async(input_series: np.ndarray) -> np.ndarray:
        return await runner.predict.async_run(input_series)

    @svc.api(input=NumpyNdarray(), output=NumpyNdarray())
    def echo(array: np.ndarray) -> np.ndarray:
        return array

    @svc.api(input=NumpyNdarray(), output=NumpyNdarray())
    def close(array: np.ndarray) -> np.ndarray:
        """An API whose name is a method of the client."""
        return -array

    return svc


def scale_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame * 2


def stamp_info(frame: pd.DataFrame) -> dict[str, Any]:
    return {"rows": len(frame), "dtypes": {str(c): str(t) for c, t in frame.dtypes.items()},
            "first": str(frame.iloc[0, 0]) if len(frame) else None}


def table_service() -> dosirak.Service:
    """DataFrames in several JSON layouts, and a Series."""
    svc = dosirak.Service("tables")

    @svc.api(input=PandasDataFrame(orient="split"), output=PandasDataFrame(orient="split"))
    def scale_split(frame: pd.DataFrame) -> pd.DataFrame:
        return scale_rows(frame)

    @svc.api(input=PandasDataFrame(orient="columns", columns=["a", "b"]),
             output=PandasDataFrame())
    def scale_columns(frame: pd.DataFrame) -> pd.DataFrame:
        return scale_rows(frame)

    @svc.api(input=PandasDataFrame(orient="index", columns=["a", "b"]),
             output=PandasDataFrame())
    def scale_index(frame: pd.DataFrame) -> pd.DataFrame:
        return scale_rows(frame)

    @svc.api(input=PandasDataFrame(orient="index"), output=PandasDataFrame())
    def scale_unnamed(frame: pd.DataFrame) -> pd.DataFrame:
        """Without column names the "index" and "columns" layouts have the same schema."""
        return scale_rows(frame)

    @svc.api(input=PandasDataFrame(), output=JSON())
    def info(frame: pd.DataFrame) -> dict[str, Any]:
        return stamp_info(frame)

    @svc.api(input=PandasDataFrame(), output=PandasDataFrame(default_format="parquet"))
    def as_parquet(frame: pd.DataFrame) -> pd.DataFrame:
        return frame

    @svc.api(input=PandasSeries(dtype="float64"), output=PandasSeries())
    def cumulative(series: pd.Series) -> pd.Series:
        return series.cumsum()

    return svc


def mirror(image: PILImage.Image) -> PILImage.Image:
    return image.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT)


def file_facts(upload: UploadedFile) -> dict[str, Any]:
    data = upload.read()
    return {"name": upload.filename, "type": upload.content_type, "size": len(data),
            "head": data[:8].hex()}


def media_service() -> dosirak.Service:
    """Images, files, text, pydantic JSON and multipart inputs."""
    svc = dosirak.Service("media")

    @svc.api(input=Image(), output=Image())
    def flip(image: PILImage.Image) -> PILImage.Image:
        return mirror(image)

    @svc.api(input=Image(allowed_mime_types=["image/jpeg"]), output=JSON())
    def jpeg_size(image: PILImage.Image) -> list[int]:
        return list(image.size)

    @svc.api(input=File(), output=JSON())
    def facts(upload: UploadedFile) -> dict[str, Any]:
        return file_facts(upload)

    @svc.api(input=File(), output=File(mime_type="application/pdf"))
    def reverse(upload: UploadedFile) -> bytes:
        return upload.read()[::-1]

    @svc.api(input=Text(), output=Text())
    async def shout(text: str) -> str:
        await asyncio.sleep(0)
        return text.upper()

    @svc.api(input=JSON(pydantic_model=Flower), output=JSON(pydantic_model=Area))
    def sepal_area(flower: Flower) -> Area:
        return Area(area=flower.sepal_length * flower.sepal_width, name=flower.name)

    @svc.api(input=JSON(), output=JSON())
    def keys(document: Any) -> Any:
        return sorted(document) if isinstance(document, dict) else document

    @svc.api(input=Multipart(image=Image(), rows=NumpyNdarray(dtype="float64"), note=Text(),
                             flower=JSON(pydantic_model=Flower), upload=File(),
                             table=PandasDataFrame(orient="split")),
             output=JSON())
    def everything(image: PILImage.Image, rows: np.ndarray, note: str, flower: Flower,
                   upload: UploadedFile, table: pd.DataFrame) -> dict[str, Any]:
        return {"size": list(image.size), "sum": float(rows.sum()), "note": note,
                "flower": flower.sepal_length, "upload": file_facts(upload),
                "table": table.to_dict(orient="list")}

    @svc.api(input=JSON(), output=Multipart(label=Text(), scores=NumpyNdarray(),
                                            picture=Image()))
    def parts(document: Any) -> dict[str, Any]:
        return {"label": "setosa", "scores": np.array([0.9, 0.1]),
                "picture": PILImage.new("RGB", (3, 2), (255, 0, 0))}

    return svc


def png(size: tuple[int, int] = (4, 3)) -> PILImage.Image:
    """A small picture with a gradient, so a mirror image differs from it."""
    image = PILImage.new("RGB", size)
    image.putdata([(x * 40, y * 60, (x + y) * 20) for y in range(size[1])
                   for x in range(size[0])])
    return image


def image_bytes(image: PILImage.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


class Recorder:
    """ASGI middleware keeping the method, path and content types of every request and answer.

    The tests use it to see what the client really sent, on the server's side of the socket.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[dict[str, str | None]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        entry: dict[str, str | None] = {
            "path": scope["path"],
            "content-type": _text(headers.get(b"content-type")),
            "accept": _text(headers.get(b"accept")),
            "answer": None,
        }
        self.seen.append(entry)

        async def recording_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer = dict(message.get("headers", []))
                entry["answer"] = _text(answer.get(b"content-type"))
            await send(message)

        await self.app(scope, receive, recording_send)

    def last(self, path: str) -> dict[str, str | None]:
        """The last request to ``path``."""
        return next(entry for entry in reversed(self.seen) if entry["path"] == path)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


class LateStart:
    """ASGI wrapper that lets the server listen at once and starts the service ``delay`` s later.

    Until then ``/readyz`` answers 503 from the real app, as a service whose runners are still
    loading does.
    """

    def __init__(self, app: Any, delay: float) -> None:
        self.app = app
        self.delay = delay

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        inner: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await receive()  # lifespan.startup
        await send({"type": "lifespan.startup.complete"})

        async def discard(message: dict[str, Any]) -> None:
            pass

        async def start_later() -> None:
            await asyncio.sleep(self.delay)
            await inner.put({"type": "lifespan.startup"})
            await self.app(scope, inner.get, discard)

        task = asyncio.create_task(start_later())
        await receive()  # lifespan.shutdown
        await inner.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(task, timeout=30)
        await send({"type": "lifespan.shutdown.complete"})
