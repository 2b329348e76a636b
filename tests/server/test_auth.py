"""Bearer-token authentication on a real server: every route (the APIs, the Open Inference
Protocol, Swagger UI and its assets, the docs, /metrics, /metadata, the probes) with no token,
a wrong one and a good one; tokens from a file of digests and from DOSIRAK_API_TOKENS; public
routes; the OpenAPI scheme; the clients' token=."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

import dosirak
from dosirak.config import load_config
from dosirak.exceptions import InvalidArgument
from dosirak.io import NumpyNdarray
from dosirak.server.auth import TOKENS_ENV, token_digest
from live_server import Served, serve

GOOD = "s3cret-token-1"
OTHER = "another-token-2"
REFUSED = {"error": "authentication required: send a valid token as 'Authorization: Bearer "
                    "TOKEN'"}
ROW = json.dumps([[1.0, 2.0, 3.0, 4.0]]).encode()
INFER = json.dumps({"inputs": [{"name": "rows", "datatype": "FP64", "shape": [1, 4],
                                "data": [1, 2, 3, 4]}]}).encode()
# (method, path, body, content type) of every kind of route the app serves
PROTECTED = [
    ("POST", "/classify", ROW, "application/json"),
    ("POST", "/v2/models/classify/infer", INFER, None),
    ("GET", "/v2", None, None),
    ("GET", "/v2/models/classify", None, None),
    ("GET", "/v2/models/classify/ready", None, None),
    ("GET", "/", None, None),
    ("GET", "/docs.json", None, None),
    ("GET", "/static/swagger-init.js", None, None),
    ("GET", "/static/swagger-ui/swagger-ui.css", None, None),
    ("GET", "/metrics", None, None),
    ("GET", "/metadata", None, None),
]
PUBLIC = ["/livez", "/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"]


def service() -> dosirak.Service:
    svc = dosirak.Service("guarded")

    @svc.api(input=NumpyNdarray(dtype="float64", shape=(-1, 4), enforce_dtype=True,
                                enforce_shape=True), output=NumpyNdarray())
    def classify(rows: np.ndarray) -> np.ndarray:
        return rows.sum(axis=1)

    return svc


def call(url: str, method: str, path: str, body: bytes | None = None,
         content_type: str | None = None, token: str | None = None,
         authorization: str | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", urlsplit(url).port, timeout=30)
    headers = {}
    if content_type:
        headers["content-type"] = content_type
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if authorization is not None:
        headers["authorization"] = authorization
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, \
            response.read()
    finally:
        connection.close()


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(f"# the team's token\n{token_digest(GOOD)}\n\n{token_digest(OTHER).upper()}"
                    "  # ci\n")
    return path


def config_with(**options: object) -> object:
    return load_config(environ={}, overrides={f"api_server.auth.{k}": v
                                              for k, v in options.items()})


def test_every_route_with_no_token_a_wrong_one_and_a_good_one(tokens_file: Path) -> None:
    with serve(service(), config=config_with(tokens_file=str(tokens_file))) as url:
        for method, path, body, content_type in PROTECTED:
            for wrong in (None, "wrong", GOOD + "x", ""):
                status, headers, answer = call(url, method, path, body, content_type, wrong)
                assert status == 401, (path, wrong)
                assert headers["www-authenticate"] == 'Bearer realm="dosirak"'
                assert json.loads(answer) == REFUSED  # the same whatever was wrong
                assert "x-request-id" in headers
            for authorization in (f"Basic {GOOD}", GOOD, f"Bearer{GOOD}"):
                assert call(url, method, path, body, content_type,
                            authorization=authorization)[0] == 401
            for token in (GOOD, OTHER):
                status, _, answer = call(url, method, path, body, content_type, token)
                assert status == 200, (path, answer[:200])
            status, _, _ = call(url, method, path, body, content_type,
                                authorization=f"bearer   {GOOD}")
            assert status == 200  # the scheme's case and spacing do not matter
        for path in PUBLIC:
            assert call(url, "GET", path)[0] == 200, path
        # a 404 stays hidden behind the gate: no token, no hint of which routes exist
        assert call(url, "GET", "/nope")[0] == 401
        assert call(url, "GET", "/nope", token=GOOD)[0] == 404


def test_tokens_from_the_environment_and_public_routes() -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TOKENS_ENV, f" {GOOD} ,{OTHER}")
        config = config_with(public_routes=["/livez", "/metrics", "/static/*"])
        with serve(service(), config=config) as url:
            assert call(url, "POST", "/classify", ROW, "application/json")[0] == 401
            assert call(url, "POST", "/classify", ROW, "application/json", OTHER)[0] == 200
            assert call(url, "GET", "/metrics")[0] == 200
            assert call(url, "GET", "/static/swagger-init.js")[0] == 200
            assert call(url, "GET", "/readyz")[0] == 401  # no longer listed
            assert call(url, "GET", "/metadata")[0] == 401
        with serve(service(), config=config_with(enabled=False)) as url:
            assert call(url, "POST", "/classify", ROW, "application/json")[0] == 200


def test_auth_is_off_without_tokens_and_enabled_without_tokens_is_an_error(
        tmp_path: Path) -> None:
    with serve(service()) as url:
        assert call(url, "GET", "/metadata")[0] == 200
    with pytest.raises(InvalidArgument, match="enabled is true but no token is configured"):
        dosirak.server.app.create_app(service(), config=config_with(enabled=True))
    bad = tmp_path / "bad"
    bad.write_text(f"{token_digest(GOOD)}\n{GOOD}\n")
    with pytest.raises(InvalidArgument, match=r"bad, line 2: not a SHA-256 hex digest"):
        dosirak.server.app.create_app(service(), config=config_with(tokens_file=str(bad)))
    with pytest.raises(InvalidArgument, match="cannot be read"):
        dosirak.server.app.create_app(service(),
                                      config=config_with(tokens_file=str(tmp_path / "none")))
    with pytest.raises(InvalidArgument, match="public_routes"):
        config_with(public_routes=["metrics"])


def test_openapi_declares_the_scheme(tokens_file: Path) -> None:
    app = dosirak.server.app.create_app(service(),
                                        config=config_with(tokens_file=str(tokens_file)))
    document = json.loads(app.state.openapi)
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert document["security"] == [{"bearerAuth": []}]
    operation = document["paths"]["/classify"]["post"]
    assert "security" not in operation and "401" in operation["responses"]
    assert document["paths"]["/livez"]["get"]["security"] == []
    from openapi_spec_validator import validate

    validate(document)


def test_clients_send_their_token(tokens_file: Path) -> None:
    with serve(service(), config=config_with(tokens_file=str(tokens_file))) as url:
        with pytest.raises(dosirak.exceptions.DosirakError) as refused:
            dosirak.SyncHTTPClient(url)
        assert refused.value.status == 401
        with dosirak.SyncHTTPClient(url, token=GOOD, wait_ready=True) as client:
            assert client.classify(np.ones((2, 4))).tolist() == [4.0, 4.0]

        async def go() -> list[float]:
            client = await dosirak.AsyncHTTPClient.from_url(url, token=OTHER)
            try:
                return (await client.classify(np.ones((1, 4)))).tolist()
            finally:
                await client.close()

        assert asyncio.run(go()) == [4.0]
    with pytest.raises(InvalidArgument, match="token must be"):
        dosirak.SyncHTTPClient("http://127.0.0.1:1", token="a\r\nb")


def test_dosirak_serve_with_tokens_in_the_environment(tmp_path: Path) -> None:
    target = tmp_path / "guarded.py"
    target.write_text("import numpy as np\nimport dosirak\nsvc = dosirak.Service('guarded')\n"
                      "@svc.api(input=dosirak.io.NumpyNdarray(), output=dosirak.io.NumpyNdarray())"
                      "\ndef classify(rows: np.ndarray) -> np.ndarray:\n"
                      "    return rows.sum(axis=1)\n")
    with Served([f"{target}:svc"], cwd=tmp_path, env={TOKENS_ENV: GOOD}) as server:
        assert server.get("/livez")[0] == 200
        assert server.post("/classify", [[1, 2, 3, 4]])[0] == 401
        status, _, answer = server.post("/classify", [[1, 2, 3, 4]],
                                        {"authorization": f"Bearer {GOOD}"})
        assert status == 200 and answer == [10.0]
        status, _, _ = server.request("POST", "/v2/models/classify/infer", INFER,
                                      {"authorization": f"Bearer {GOOD}"})
        assert status == 200
        digest = hashlib.sha256(GOOD.encode()).hexdigest()
        assert not any(GOOD in line or digest in line for line in server.lines)
