"""``dosirak.HTTPServer`` and the client names BentoML 1.x code imports: ``Client.from_url``,
``HTTPClient``, ``AsyncHTTPClient``; the server runs a real ``dosirak serve``."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest

import dosirak as bentoml
from dosirak.client import AsyncHTTPClient, Client, HTTPClient
from dosirak.exceptions import InvalidArgument, ServiceUnreachable

from .serving import write_service

SERVICE = '''
import numpy as np

import dosirak as bentoml
from dosirak.io import NumpyNdarray

svc = bentoml.Service("iris_classifier")


@svc.api(input=NumpyNdarray(), output=NumpyNdarray())
def classify(input_series: np.ndarray) -> np.ndarray:
    return input_series.sum(axis=1)
'''


def test_http_server_start_returns_a_client_and_stops_with_it(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    write_service(tmp_path, SERVICE)
    monkeypatch.chdir(tmp_path)
    output = io.StringIO()
    server = bentoml.HTTPServer("service.py:svc", port=0, output=output)
    with server.start() as client:
        assert client.classify(np.array([[1.0, 2.0]])).tolist() == [3.0]
        assert server.running
        # The names 1.x code imports reach the same server.
        with Client.from_url(server.url) as other:
            assert isinstance(other, HTTPClient)
            assert other.classify(np.array([[2.0, 2.0]])).tolist() == [4.0]
        Client.wait_until_server_ready("127.0.0.1", int(server.url.rsplit(":", 1)[1]))

        async def call() -> list[float]:
            async with AsyncHTTPClient(server.url) as client:
                return (await client.classify(np.array([[5.0, 5.0]]))).tolist()

        assert asyncio.run(call()) == [10.0]
    assert not server.running
    assert "is ready at" in output.getvalue()


def test_http_server_as_a_context_manager(tmp_path: Path) -> None:
    write_service(tmp_path, SERVICE)
    with bentoml.HTTPServer(str(tmp_path / "service.py") + ":svc", port=0,
                            output=io.StringIO()) as server:
        assert server.get_client().classify(np.array([[1, 1]])).tolist() == [2]
        with pytest.raises(InvalidArgument, match="started already"):
            server.start()
    assert not server.running
    with pytest.raises(InvalidArgument, match="not running"):
        server.get_client()


def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    server = bentoml.HTTPServer(str(tmp_path / "missing.py") + ":svc", port=0,
                                output=io.StringIO(), timeout=60)
    with pytest.raises(ServiceUnreachable, match=r"missing\.py"):
        server.start()
    assert not server.running
