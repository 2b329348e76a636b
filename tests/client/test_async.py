"""AsyncHTTPClient against real servers: the same calls as the sync client, awaited, and many
at once over one pool of connections."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image as PILImage
from sklearn.linear_model import LogisticRegression

import dosirak
from dosirak.client import AsyncHTTPClient
from dosirak.exceptions import BadInput, RemoteError
from server.example_services import Flower

from .conftest import Served
from .services import mirror, png, stamp_info
from .test_sync import FRAME, SAMPLE


def test_iris_classify(iris: Served, iris_model: LogisticRegression) -> None:
    async def main() -> np.ndarray:
        async with dosirak.AsyncHTTPClient(iris.url) as client:
            return await client.classify(np.array([[5.1, 3.5, 1.4, 0.2]]))

    result = asyncio.run(main())
    assert isinstance(result, np.ndarray)
    assert result.tolist() == iris_model.predict([[5.1, 3.5, 1.4, 0.2]]).tolist() == [0]
    seen = iris.recorder.last("/classify")
    assert (seen["content-type"], seen["accept"], seen["answer"]) == ("application/x-npy",) * 3


def test_many_calls_at_once(iris: Served) -> None:
    # ``echo`` has no batcher in front, whose load shedding could refuse calls on a busy machine.
    arrays = [np.full((i % 5 + 1, 4), i, dtype=np.float32) for i in range(60)]

    async def main() -> list[np.ndarray]:
        client = await AsyncHTTPClient.from_url(iris.url)
        try:
            return await asyncio.gather(*(client.echo(array) for array in arrays))
        finally:
            await client.close()

    results = asyncio.run(main())
    for result, array in zip(results, arrays, strict=True):
        assert result.dtype == np.float32
        np.testing.assert_array_equal(result, array)


def test_every_kind_of_value(tables: Served, media: Served, tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"\x00" * 10)
    picture = png()

    async def main() -> dict[str, object]:
        async with AsyncHTTPClient(tables.url) as table_client, \
                AsyncHTTPClient(media.url) as media_client:
            return {
                "frame": await table_client.info(FRAME),
                "series": await table_client.cumulative(pd.Series([1.0, 2.0])),
                "pydantic": await media_client.sepal_area(Flower(sepal_length=2.0,
                                                                 sepal_width=4.0)),
                "text": await media_client.shout("quiet"),
                "image": await media_client.flip(picture),
                "file": await media_client.facts(path),
                "fields": await media_client.call(
                    "everything", image=picture, rows=np.ones(2), note="n",
                    flower={"sepal_length": 1.5, "sepal_width": 1.0}, upload=b"xy",
                    table=pd.DataFrame({"c": ["p", "q"]})),
            }

    results = asyncio.run(main())
    assert results["frame"] == stamp_info(FRAME)
    assert results["series"] == [1.0, 3.0]
    assert results["pydantic"] == {"area": 8.0, "name": None}
    assert results["text"] == "QUIET"
    assert isinstance(results["image"], PILImage.Image)
    assert list(results["image"].getdata()) == list(mirror(picture).getdata())
    assert results["file"] == {"name": "data.bin", "type": "application/octet-stream",
                               "size": 10, "head": "00" * 8}
    fields = results["fields"]
    assert isinstance(fields, dict)
    assert (fields["size"], fields["sum"], fields["note"], fields["flower"]) == \
        ([4, 3], 2.0, "n", 1.5)
    assert fields["table"] == {"c": ["p", "q"]}


def test_errors_are_typed(iris: Served, media: Served) -> None:
    async def main() -> tuple[BaseException, ...]:
        async with AsyncHTTPClient(media.url) as client, AsyncHTTPClient(iris.url) as iris_client:
            return tuple(await asyncio.gather(
                client.sepal_area({"sepal_length": -1.0, "sepal_width": 1.0}),
                iris_client.classify(np.ones((1, 3))),  # the model takes 4 features: checked
                iris_client.call("close", np.array(["a", "b"])),  # -array of text: it raises
                return_exceptions=True))

    invalid, misfit, crashed = asyncio.run(main())
    assert isinstance(invalid, BadInput)
    assert invalid.status == 400
    assert invalid.detail[0]["loc"] == ["body", "sepal_length"]
    assert isinstance(misfit, BadInput)
    assert "rows of 4 features" in str(misfit)
    assert isinstance(crashed, RemoteError)
    assert crashed.status == 500
    assert crashed.request_id and crashed.request_id in str(crashed)


def test_constructor_inside_a_running_loop(iris: Served) -> None:
    # The plain constructor reads the schema with a blocking request; it works in a loop too.
    async def main() -> list[int]:
        client = AsyncHTTPClient(iris.url, wait_ready=True)
        try:
            return (await client.call("classify", SAMPLE[:1])).tolist()
        finally:
            await client.aclose()

    assert asyncio.run(main()) == [0]
