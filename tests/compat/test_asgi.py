"""ASGI and WSGI apps beside a service, as BentoML 1.x users write them: a FastAPI app and a
Flask app mounted on a service, an ASGI middleware around it, all over a real ``dosirak serve``;
and ``svc.asgi_app`` under Starlette's ``TestClient``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from websockets.sync.client import connect

from .serving import served

SERVICE = '''
import numpy as np
from fastapi import FastAPI, WebSocket
from flask import Flask, request
from starlette.middleware.base import BaseHTTPMiddleware

import dosirak as bentoml
from dosirak.io import NumpyNdarray

svc = bentoml.Service("mounted")


@svc.api(input=NumpyNdarray(), output=NumpyNdarray())
def classify(input_series: np.ndarray) -> np.ndarray:
    return input_series.sum(axis=1)


fastapi_app = FastAPI()


@fastapi_app.get("/metadata_extra")
def metadata_extra():
    return {"name": svc.name, "apis": sorted(svc.apis)}


@fastapi_app.post("/echo/{word}")
def echo(word: str, times: int = 1):
    return {"echo": [word] * times}


@fastapi_app.websocket("/shout")
async def shout(websocket: WebSocket):
    await websocket.accept()
    await websocket.send_text((await websocket.receive_text()).upper())
    await websocket.close()


flask_app = Flask(__name__)


@flask_app.route("/hello", methods=["GET", "POST"])
def hello():
    return {"hello": request.args.get("name", "world"), "method": request.method}


class StampMiddleware(BaseHTTPMiddleware):
    def __init__(self, app, header_value):
        super().__init__(app)
        self.header_value = header_value

    async def dispatch(self, request, call_next):
        response = await call_next(request)
        response.headers["x-stamp"] = self.header_value
        return response


class BlockMiddleware:  # a plain ASGI middleware
    def __init__(self, app, blocked):
        self.app, self.blocked = app, blocked

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == self.blocked:
            await send({"type": "http.response.start", "status": 403, "headers": []})
            await send({"type": "http.response.body", "body": b"blocked"})
            return
        await self.app(scope, receive, send)


svc.mount_asgi_app(fastapi_app, path="/")
svc.mount_wsgi_app(flask_app, path="/flask")
svc.add_asgi_middleware(StampMiddleware, header_value="dosirak")
svc.add_asgi_middleware(BlockMiddleware, blocked="/flask/secret")
'''


def test_fastapi_flask_and_middleware_beside_the_apis(tmp_path: Path) -> None:
    with served(tmp_path, SERVICE) as server:
        status, headers, body = server.request("POST", "/classify", b"[[1, 2]]",
                                               {"content-type": "application/json"})
        assert (status, json.loads(body), headers["x-stamp"]) == (200, [3], "dosirak")
        status, headers, body = server.request("GET", "/metadata_extra")
        assert status == 200 and json.loads(body) == {"name": "mounted", "apis": ["classify"]}
        assert headers["x-stamp"] == "dosirak"
        status, _, body = server.request("POST", "/echo/hi?times=2")
        assert (status, json.loads(body)) == (200, {"echo": ["hi", "hi"]})
        status, _, body = server.request("GET", "/flask/hello?name=kim")
        assert (status, json.loads(body)) == (200, {"hello": "kim", "method": "GET"})
        status, _, body = server.request("POST", "/flask/hello")
        assert (status, json.loads(body)["method"]) == (200, "POST")
        assert server.request("GET", "/flask/secret")[::2] == (403, b"blocked")
        # The service's own routes win over the app mounted at "/".
        assert server.get("/readyz") == (200, b"ready")
        assert server.get("/docs.json")[0] == 200
        assert "x-request-id" in server.request("GET", "/metadata_extra")[1]
        # A mounted app's websockets are served (workers of services without mounted apps or
        # middleware start uvicorn without a websocket implementation).
        with connect(f"ws://127.0.0.1:{server.port}/shout", open_timeout=10) as websocket:
            websocket.send("hello")
            assert websocket.recv(timeout=10) == "HELLO"


def test_svc_asgi_app_under_starlette_test_client(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  request: pytest.FixtureRequest) -> None:
    from starlette.testclient import TestClient

    from dosirak.target import load_service

    (tmp_path / "service.py").write_text(SERVICE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "service", raising=False)
    request.addfinalizer(lambda: sys.modules.pop("service", None))  # imported below
    svc = load_service("service.py:svc")
    with TestClient(svc.asgi_app) as client:
        response = client.post("/classify", json=[[1, 2], [3, 4]])
        assert response.status_code == 200 and response.json() == [3, 7]
        assert response.headers["x-stamp"] == "dosirak"
        assert client.get("/flask/hello").json() == {"hello": "world", "method": "GET"}
        assert client.get("/readyz").status_code == 200
    assert svc.asgi_app is svc.asgi_app  # built once
