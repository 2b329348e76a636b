"""The generic service: config errors name the field, failures keep the envelope and the status,
``dosirak.generic:svc`` comes from $CONFIG_PATH, and batchable methods batch in worker processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from sklearn import datasets, svm

import dosirak
import dosirak.generic
from dosirak.exceptions import InvalidArgument, ServiceOverloaded
from dosirak.generic import Envelope, build_service
from dosirak.io import NumpyNdarray
from dosirak.server.errors import error_response
from live_server import serve

IRIS = datasets.load_iris()


@pytest.fixture
def iris_clf() -> svm.SVC:
    clf = svm.SVC(gamma="scale").fit(IRIS.data, IRIS.target)
    dosirak.sklearn.save_model("iris_clf", clf)
    return clf


def config(**endpoint) -> dict:
    return {"service": "iris_generic",
            "endpoints": [{"name": "classify", "model": "iris_clf", **endpoint}]}


def write(tmp_path: Path, data: dict, name: str = "service.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


# ----- configuration errors ---------------------------------------------------------------


@pytest.mark.parametrize(("data", "expected"), [
    ({"endpoints": [{"model": "iris_clf"}]}, "service: Field required"),
    ({"service": "Bad Name", "endpoints": [{"model": "x"}]}, "service: String should match"),
    ({"service": "s", "endpoints": []}, "endpoints: List should have at least 1 item"),
    ({"service": "s", "endpoints": [{"name": "a"}]}, "endpoints[0].model: Field required"),
    ({"service": "s", "endpoints": [{"model": "m", "input": "Tensor"}]},
     "endpoints[0].input.type: Input should be 'NumpyNdarray', 'PandasDataFrame'"),
    ({"service": "s", "endpoints": [{"model": "m", "envelop": True}]},
     "endpoints[0].envelop: Extra inputs are not permitted"),
    ({"service": "s", "endpoints": [{"model": "m"}, {"model": "n"}]},
     "endpoint names must be unique; ['predict'] repeat"),
    ({"service": "s", "endpoints": [{"model": "m", "batching": {"max_batch_size": 0}}]},
     "endpoints[0].batching.max_batch_size: Input should be greater than or equal to 1"),
])
def test_bad_config_names_the_field(tmp_path, data, expected):
    path = write(tmp_path, data)
    with pytest.raises(InvalidArgument) as raised:
        build_service(path)
    assert str(path) in str(raised.value)
    assert expected in str(raised.value)


@pytest.mark.parametrize(("endpoint", "expected"), [
    ({"model": "nope"}, "endpoints[0].model: "),
    ({"framework": "pytorch"}, "endpoints[0].framework: model iris_clf:"),
    ({"method": "transform"}, "endpoints[0].method: model iris_clf:"),
    ({"input": {"type": "NumpyNdarray", "dtype": "float99"}}, "endpoints[0].input: "),
    ({"input": {"type": "NumpyNdarray", "colour": "red"}},
     "endpoints[0].input: NumpyNdarray does not take these options"),
    ({"route": "/readyz"}, "endpoints[0]: route '/readyz' is used by the server itself"),
    ({"dtype": "float99"}, "endpoints[0].dtype: 'float99' is not a numpy dtype"),
])
def test_config_checked_against_the_store_names_the_field(tmp_path, iris_clf, endpoint, expected):
    data = config(**endpoint)
    with pytest.raises(InvalidArgument) as raised:
        build_service(write(tmp_path, data))
    assert expected in str(raised.value)


def test_unreadable_and_malformed_files_are_clear(tmp_path):
    with pytest.raises(InvalidArgument, match="cannot read the generic service config"):
        build_service(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.json"
    broken.write_text('{"service": ')
    with pytest.raises(InvalidArgument, match="is not valid JSON"):
        build_service(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(InvalidArgument, match="must be a mapping"):
        build_service(listed)


# ----- answers and failures over HTTP -----------------------------------------------------


def test_failures_keep_the_envelope_and_the_status(tmp_path, iris_clf):
    svc = build_service(write(tmp_path, config(
        input={"type": "NumpyNdarray", "dtype": "float64", "shape": [-1, 4],
               "enforce_shape": True, "enforce_dtype": True}, output="NumpyNdarray")))
    with serve(svc) as url:
        ok = httpx.post(f"{url}/classify", json=[[5.9, 3.0, 5.1, 1.8]])
        bad_json = httpx.post(f"{url}/classify", content=b"[[5.9, 3.0,",
                              headers={"content-type": "application/json"})
        bad_shape = httpx.post(f"{url}/classify", json=[[5.9, 3.0]])
        bad_type = httpx.post(f"{url}/classify", content=b"hello",
                              headers={"content-type": "text/plain"})
    assert ok.json() == {"success": True, "message": "Success", "result": [2]}
    assert bad_json.status_code == 400
    assert bad_json.json()["success"] is False
    assert bad_json.json()["message"].startswith("Fail: malformed JSON at line 1")
    assert bad_shape.status_code == 400
    assert bad_shape.json()["message"] == "Fail: expected shape (any, 4), got (1, 2)"
    assert bad_shape.json()["detail"][0]["loc"] == ["body", "axis 1"]
    assert bad_type.status_code == 415
    assert bad_type.json()["success"] is False
    assert "accepted" in bad_type.json()


def test_a_model_error_is_a_500_failure_envelope_without_the_exception_text(tmp_path):
    def picky(rows):
        raise ValueError("secret detail from inside the model")

    dosirak.picklable_model.save_model("picky", picky)
    svc = build_service(write(tmp_path, {"service": "picky", "endpoints": [
        {"model": "picky", "input": "JSON", "output": "JSON"}]}))
    with serve(svc) as url:
        response = httpx.post(f"{url}/predict", json={"a": 1})
    assert response.status_code == 500
    body = response.json()
    assert body["success"] is False
    assert body["message"].startswith("Fail: the API raised an exception")
    assert body["request_id"] == response.headers["x-request-id"]
    assert "secret" not in response.text


def test_overload_becomes_a_503_failure_envelope_with_retry_after():
    status, data, headers = error_response(ServiceOverloaded("over budget", retry_after=2.5),
                                           route="/x", shape=Envelope(NumpyNdarray()).error_body)
    assert status == 503
    assert json.loads(data) == {"success": False, "message": "Fail: over budget"}
    assert (b"retry-after", b"3") in headers


def test_envelope_off_gives_the_plain_descriptor_answer_and_errors(tmp_path, iris_clf):
    svc = build_service(write(tmp_path, config(output="NumpyNdarray", envelope=False)))
    with serve(svc) as url:
        ok = httpx.post(f"{url}/classify", json=[[5.9, 3.0, 5.1, 1.8]])
        npy = httpx.post(f"{url}/classify", json=[[5.9, 3.0, 5.1, 1.8]],
                         headers={"accept": "application/x-npy"})
        bad = httpx.post(f"{url}/classify", content=b"[", headers={"content-type":
                                                                    "application/json"})
    assert ok.json() == [2]
    assert npy.headers["content-type"] == "application/x-npy"
    assert bad.status_code == 400 and "error" in bad.json()


def test_openapi_documents_the_envelope(tmp_path, iris_clf):
    svc = build_service(write(tmp_path, config(output="JSON")))
    with serve(svc) as url:
        document = httpx.get(f"{url}/docs.json").json()
    schema = document["paths"]["/classify"]["post"]["responses"]["200"]["content"][
        "application/json"]["schema"]
    assert schema["required"] == ["success", "message", "result"]
    failure = document["paths"]["/classify"]["post"]["responses"]["400"]["content"][
        "application/json"]["schema"]
    assert failure["required"] == ["success", "message"]
    from openapi_spec_validator import validate

    validate(document)
    assert "Calls `predict` of model `iris_clf:" in \
        document["paths"]["/classify"]["post"]["description"]


# ----- CONFIG_PATH and worker processes ---------------------------------------------------


def test_module_svc_is_built_from_config_path(tmp_path, iris_clf, monkeypatch):
    path = write(tmp_path, config(output="JSON"))
    monkeypatch.delenv("CONFIG_PATH", raising=False)
    with pytest.raises(InvalidArgument, match="CONFIG_PATH is not set"):
        dosirak.generic.svc  # noqa: B018
    monkeypatch.setenv("CONFIG_PATH", str(path))
    try:
        first = dosirak.generic.svc
        assert first.name == "iris_generic" and list(first.apis) == ["classify"]
        assert dosirak.generic.svc is first  # built once
    finally:
        vars(dosirak.generic).pop("svc", None)


def test_serve_target_imports_in_a_fresh_process(tmp_path, iris_clf):
    path = write(tmp_path, config(output="JSON"))
    code = textwrap.dedent("""
        import json
        from dosirak.target import load_service
        svc = load_service("dosirak.generic:svc")  # what `dosirak serve dosirak.generic:svc` does
        print(json.dumps(svc.to_spec()["apis"][0]["route"]))
    """)
    import os

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "CONFIG_PATH": str(path)}, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == "/classify"


def test_worker_processes_batch_concurrent_requests(tmp_path, iris_clf):
    svc = build_service(write(tmp_path, config(
        output="NumpyNdarray", batching={"max_batch_size": 64, "max_latency_ms": 5000})))
    rows = IRIS.data[np.random.default_rng(0).integers(0, 150, 48)]

    async def call_all(url: str) -> list[list[int]]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            responses = await asyncio.gather(*(client.post("/classify", json=[row.tolist()])
                                               for row in rows))
        return [response.json()["result"] for response in responses]

    with serve(svc, runner_mode="process") as url:
        answers = asyncio.run(call_all(url))
        stats = svc.runners[0].methods["predict"].dispatcher.stats()
    assert answers == [[label] for label in iris_clf.predict(rows).tolist()]
    assert stats.rows == 48
    assert stats.batches < 48  # concurrent requests shared batches
