"""``dosirak.Context`` over a real ``dosirak serve``, as BentoML 1.x code uses it: request
headers, cookies and query; response status, headers and cookies; ``state`` shared with
``on_startup`` / ``on_shutdown`` hooks; ``on_deployment`` once per deployment (two workers)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from live_server import Served

from .serving import served

SERVICE = '''
import os
from pathlib import Path
from typing import AsyncGenerator

import numpy as np

import dosirak as bentoml
from dosirak.io import JSON, NumpyNdarray, Text

svc = bentoml.Service("context_demo")
MARKS = Path(os.environ["MARKS"])


@svc.on_deployment
def prepare():
    with open(MARKS / "deployment", "a") as marks:
        marks.write(f"{os.getpid()}\\n")


@svc.on_startup
def open_things(ctx: bentoml.Context):
    ctx.state["opened_by"] = os.getpid()
    ctx.state["calls"] = 0


@svc.on_shutdown
async def close_things(ctx: bentoml.Context):
    (MARKS / f"shutdown-{os.getpid()}").write_text(str(ctx.state["calls"]))


@svc.api(input=JSON(), output=JSON())
def whoami(body, ctx: bentoml.Context):
    request = ctx.request
    ctx.state["calls"] += 1
    ctx.response.status_code = 202
    ctx.response.headers["x-model-version"] = "7"
    ctx.response.set_cookie("session", "abc", max_age=60, httponly=True)
    return {"user": request.headers.get("x-user"), "cookie": request.cookies.get("team"),
            "q": request.query_params.get("q"), "body": body,
            "state": ctx.state["opened_by"] == os.getpid(), "calls": ctx.state["calls"]}


@svc.api(input=NumpyNdarray(), output=NumpyNdarray())
async def scaled(x: np.ndarray, ctx) -> np.ndarray:
    factor = float(ctx.request.query_params.get("factor", "1"))
    if factor < 0:
        ctx.response.status_code = 400
    return x * factor


@svc.api(input=Text(), output=Text())
async def chant(word: str, ctx: bentoml.Context) -> AsyncGenerator[str, None]:
    ctx.response.headers["x-stream"] = "yes"
    for _ in range(3):
        yield word


@bentoml.service
class Greeter:
    @bentoml.api
    def greet(self, name: str, ctx: bentoml.Context) -> str:
        ctx.response.headers["x-greeted"] = name
        return f"hello {name} from {ctx.request.headers.get('x-user')}"
'''


@pytest.fixture(scope="module")
def marks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("marks")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, marks: Path) -> Iterator[Served]:
    with served(tmp_path_factory.mktemp("context"), SERVICE, "svc", "--workers", "2",
                env={"MARKS": str(marks)}) as server:
        yield server


def test_request_and_response_context(server: Served) -> None:
    status, headers, body = server.request(
        "POST", "/whoami?q=iris", b'{"a": 1}',
        {"content-type": "application/json", "x-user": "kim", "cookie": "team=ml"})
    answer = json.loads(body)
    assert status == 202, answer
    assert headers["x-model-version"] == "7"
    assert headers["set-cookie"].startswith("session=abc") and "HttpOnly" in headers["set-cookie"]
    assert "Max-Age=60" in headers["set-cookie"]
    assert answer["user"] == "kim" and answer["cookie"] == "ml" and answer["q"] == "iris"
    assert answer["body"] == {"a": 1} and answer["state"] is True and answer["calls"] >= 1
    assert "x-request-id" in headers


def test_named_ctx_parameter_and_async(server: Served) -> None:
    status, _, body = server.post("/scaled?factor=2", [[1, 2]])
    assert (status, body) == (200, [[2, 4]])
    assert server.post("/scaled?factor=-1", [[1]])[0] == 400
    status, _, body = server.post("/scaled", [[1], [2, 3]])  # ragged
    assert status == 400  # input errors keep their status


def test_streaming_api_with_context(server: Served) -> None:
    status, headers, body = server.request("POST", "/chant", b"la",
                                           {"content-type": "text/plain"})
    assert (status, body, headers["x-stream"]) == (200, b"lalala", "yes")


def test_class_style_context(tmp_path: Path, marks: Path) -> None:
    with served(tmp_path, SERVICE, "Greeter", env={"MARKS": str(marks)}) as server:
        status, headers, body = server.request("POST", "/greet", b"ana",
                                               {"content-type": "text/plain", "x-user": "kim"})
        assert (status, body, headers["x-greeted"]) == (200, b"hello ana from kim", "ana")


def test_hooks_share_state_and_deployment_runs_once(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    with served(tmp_path / "svc", SERVICE, "svc", "--workers", "2",
                env={"MARKS": str(marks)}) as server:
        for _ in range(4):
            assert server.post("/whoami", {})[0] == 202
        workers = server.children()
        assert len(workers) == 2
        # A worker killed and restarted does not run the deployment hook again.
        import os
        import signal
        import time

        os.kill(workers[0], signal.SIGKILL)
        server.wait_for(r"is serving again", timeout=60)
        time.sleep(0.2)
        assert server.stop() == 0
    deployments = (marks / "deployment").read_text().split()
    assert len(deployments) == 1, deployments
    shutdowns = {path.name: int(path.read_text()) for path in marks.glob("shutdown-*")}
    assert len(shutdowns) == 2  # the two live workers at the end ran their shutdown hook
