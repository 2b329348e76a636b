"""What the server calls for an API is its endpoints' own: composed at startup (sync functions on
the event loop, predictions logged), shared by the API's route and its Open Inference Protocol
route, handed back at shutdown; the service's ``InferenceAPI`` is never rewritten."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import dosirak
from dosirak.io import JSON
from dosirak.observability.prediction_log import PREDICTION_LOGGER
from dosirak.server.app import create_app
from dosirak.server.endpoint import APIEndpoint
from live_server import serve


@pytest.fixture()
def prediction_lines() -> Iterator[io.StringIO]:
    logger = logging.getLogger(PREDICTION_LOGGER)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


def test_the_api_is_never_rewritten_and_every_route_calls_the_composed_callable(
        prediction_lines: io.StringIO) -> None:
    svc = dosirak.Service("composed")
    threads: list[str] = []

    @svc.api(input=JSON(), output=JSON())
    def double(value: Any) -> Any:
        threads.append(threading.current_thread().name)
        return value * 2

    @svc.api(input=JSON(), output=JSON())
    async def triple(value: Any) -> Any:
        return value * 3

    apis = {name: (api.callable, api.is_async) for name, api in svc.apis.items()}
    app = create_app(svc)
    endpoints = [e for e in app.endpoints.values() if isinstance(e, APIEndpoint)]
    assert len(endpoints) == 2 * 3  # each API's route and its two infer paths (one endpoint)
    with serve(app) as url:
        assert httpx.post(f"{url}/double", json=4).json() == 8
        assert httpx.post(f"{url}/triple", json=4).json() == 12
        infer = httpx.post(f"{url}/v2/models/double/infer", json={"inputs": [
            {"name": "value", "shape": [1], "datatype": "BYTES", "data": ["5"]}]})
        assert infer.status_code == 200, infer.text
        # The service's APIs are as the service made them, while the server runs.
        assert {name: (api.callable, api.is_async) for name, api in svc.apis.items()} == apis
        assert all(endpoint.function is not endpoint.api.callable for endpoint in endpoints)
    # Stopped, every endpoint calls the API's own callable again.
    assert all((endpoint.function, endpoint.is_async) == apis[endpoint.api.name]
               for endpoint in endpoints)
    # The sync function ran on the loop (no pool thread), and each call was logged once,
    # whichever route it came by.
    assert threads and not any(name.startswith("composed-api") for name in threads)
    logged = prediction_lines.getvalue().splitlines()
    assert sum("api=double" in line for line in logged) == 2
    assert sum("api=triple" in line for line in logged) == 1
