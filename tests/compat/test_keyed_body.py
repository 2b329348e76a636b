"""Issue 17, bugs 1 and 6 (client): a one-parameter class-style API reads BentoML 1.2's body,
keyed by the parameter's name (``{}`` takes the default), as well as the bare value; the
OpenAPI document says so, and the clients call it with the keyword argument."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import dosirak as bentoml
from dosirak.exceptions import BadInput
from live_server import Served

from .serving import served

SERVICE = '''
import numpy as np
import dosirak as bentoml
from dosirak.io import NumpyNdarray, JSON


@bentoml.service
class IrisClassifier:
    @bentoml.api
    def classify(self, input_series: np.ndarray = np.array([[1.0, 2.0]])) -> np.ndarray:
        return input_series.sum(axis=1)

    @bentoml.api
    def describe(self, data: dict) -> dict:
        return {"keys": sorted(data)}


legacy = bentoml.Service("legacy")


@legacy.api(input=NumpyNdarray(), output=NumpyNdarray())
def classify(input_series: np.ndarray) -> np.ndarray:
    return input_series.sum(axis=1)


@legacy.api(input=JSON(), output=JSON())
def echo(payload):
    return payload
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served(tmp_path_factory.mktemp("keyed"), SERVICE, "IrisClassifier") as server:
        yield server


def test_keyed_bare_and_default_bodies(server: Served) -> None:
    assert server.post("/classify", {"input_series": [[5.9, 3.0, 5.1, 1.8]]})[::2] == (200, [15.8])
    assert server.post("/classify", [[5.9, 3.0, 5.1, 1.8]])[::2] == (200, [15.8])
    assert server.post("/classify", {})[::2] == (200, [3.0])  # the parameter's default
    status, _, body = server.post("/classify", {"input_series": [[1]], "other": 1})
    assert status == 400, body
    # A dict parameter: the keyed form is the 1.2 call; a bare dict still works.
    assert server.post("/describe", {"data": {"b": 1, "a": 2}})[::2] == (200, {"keys": ["a", "b"]})
    assert server.post("/describe", {"b": 1})[::2] == (200, {"keys": ["b"]})


def test_openapi_documents_the_parameter(server: Served) -> None:
    import json

    _, body = server.get("/docs.json")
    document = json.loads(body)
    request = document["paths"]["/classify"]["post"]["requestBody"]
    assert request["x-dosirak-parameter"] == {"name": "input_series", "required": False,
                                              "keyed": True}
    assert "input_series" in request["description"]


def test_clients_take_the_keyword_argument(server: Served) -> None:
    row = np.array([[5.9, 3.0, 5.1, 1.8]])
    with bentoml.SyncHTTPClient(server.url) as client:
        assert client.classify(input_series=row).tolist() == pytest.approx([15.8])
        assert client.classify(row).tolist() == pytest.approx([15.8])
        assert client.classify().tolist() == [3.0]
        # A dict whose one key is the parameter's name still arrives whole.
        assert client.describe(data={"data": 1}) == {"keys": ["data"]}

    async def call() -> list[float]:
        async with bentoml.AsyncHTTPClient(server.url) as client:
            return (await client.classify(input_series=row)).tolist()

    import asyncio

    assert asyncio.run(call()) == pytest.approx([15.8])


def test_explicit_descriptors_keep_the_bare_body_and_take_keywords(tmp_path: Path) -> None:
    with served(tmp_path, SERVICE, "legacy") as server:
        status, _, _ = server.post("/classify", {"input_series": [[1, 2]]})
        assert status == 400  # 1.x's wire format is the bare array
        # ...and a JSON API gets the object it is sent, whatever its keys.
        assert server.post("/echo", {"payload": 1})[::2] == (200, {"payload": 1})
        with bentoml.SyncHTTPClient(server.url) as client:
            assert client.classify(input_series=np.array([[1, 2]])).tolist() == [3]
            assert client.echo(payload={"x": 1}) == {"x": 1}
            with pytest.raises(bentoml.exceptions.InvalidArgument, match="takes one value"):
                client.classify()
            with pytest.raises(BadInput):
                client.call("classify", input_series=[[1], [2, 3]])  # ragged
