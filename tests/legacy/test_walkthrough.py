"""Seed 001 and 004's walk-through with scikit-learn, from the seed's own code: pack and save,
list and get, serve over real HTTP (0.x request and response shapes, Swagger, /metadata,
batching seen in /metrics), run, load."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from legacy.seed import cli, run_python
from live_server import Served

ROW = [5.1, 3.5, 1.4, 0.2]


def test_packer_saves_a_bento_with_the_artifact_as_a_model(project: Path, dosirak_home: Path
                                                           ) -> None:
    done = run_python(project, "bento_packer.py")
    assert done.returncode == 0, done.stderr
    saved = re.search(r"saved to: (\S+)", done.stderr)
    assert saved, done.stderr  # the seed: "Saved to ~ 경로가 보일 것임"
    bundle = Path(saved.group(1))
    assert bundle.is_relative_to(dosirak_home / "bentos" / "irisclassifier")
    description = yaml.safe_load((bundle / "src" / "bentoml.yml").read_text())
    assert description["metadata"]["service_name"] == "IrisClassifier"
    assert description["apis"] == [{
        "name": "predict", "route": "predict", "docs": description["apis"][0]["docs"],
        "input_type": "DataframeInput", "output_type": "DefaultOutput",
        "mb_max_batch_size": 1000, "mb_max_latency": 10000, "batch": True,
        "input_config": {"orient": None, "typ": "frame", "dtype": None}}]
    assert "Dataframe input adapter" in description["apis"][0]["docs"]
    artifact = description["artifacts"][0]
    assert artifact["name"] == "model" and artifact["artifact_type"] == "SklearnModelArtifact"
    assert any(p.startswith("scikit-learn==") for p in description["env"]["pip_packages"])
    models = json.loads(cli("models", "list", "-o", "json").stdout)
    assert [m["tag"] for m in models] == [artifact["model"]]


def test_list_and_get_show_the_saved_service(packed: Path) -> None:
    listed = cli("list")
    assert listed.returncode == 0 and "irisclassifier:" in listed.stdout, listed.stderr
    got = cli("get", "IrisClassifier:latest", "-o", "json")
    assert got.returncode == 0, got.stderr
    info = json.loads(got.stdout)
    legacy = info["bentoml"]
    assert legacy["metadata"]["service_name"] == "IrisClassifier"
    assert legacy["apis"][0]["batch"] is True and legacy["apis"][0]["mb_max_latency"] == 10000
    assert legacy["artifacts"][0]["artifact_type"] == "SklearnModelArtifact"
    assert legacy["env"]["infer_pip_packages"] is True
    assert info["models"][0]["tag"] == legacy["artifacts"][0]["model"]


def test_serve_answers_the_0x_request_shapes(packed: Path) -> None:
    with Served(["IrisClassifier:latest"], cwd=packed) as server:
        # seed 004's curl: a JSON list of rows
        status, _, body = server.request("POST", "/predict", json.dumps([ROW]).encode(),
                                         {"content-type": "application/json"})
        assert (status, json.loads(body)) == (200, [0])
        # curl -d without a Content-Type
        status, _, body = server.request(
            "POST", "/predict", b"[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]",
            {"content-type": "application/x-www-form-urlencoded"})
        assert (status, json.loads(body)) == (200, [0, 2])
        records = [dict(zip("0123", ROW, strict=True))]
        status, _, answer = server.post("/predict", records)
        assert (status, answer) == (200, [0])
        csv = b"a,b,c,d\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n"
        status, _, body = server.request("POST", "/predict", csv, {"content-type": "text/csv"})
        assert (status, json.loads(body)) == (200, [0, 2])
        # Swagger UI at / and the docstrings in the OpenAPI document it shows
        status, page = server.get("/")
        assert status == 200 and b"swagger" in page.lower()
        status, docs = server.get("/docs.json")
        operation = json.loads(docs)["paths"]["/predict"]["post"]
        assert "Dataframe input adapter" in operation["description"]
        # /metadata: the artifacts and their metadata
        status, metadata = server.get("/metadata")
        artifacts = json.loads(metadata)["bentoml"]["artifacts"]
        assert [(a["name"], a["artifact_type"], a["metadata"]) for a in artifacts] == [
            ("model", "SklearnModelArtifact", {})]
        # a malformed body is a 400 that says what is wrong
        status, _, body = server.request("POST", "/predict", b"[[5.1, 3.5",
                                         {"content-type": "application/json"})
        assert status == 400 and b"malformed JSON" in body
        status, _, body = server.request("POST", "/predict", b'"text"',
                                         {"content-type": "application/json"})
        assert status == 400 and b"list of rows" in body


def test_batching_merges_concurrent_requests(packed: Path) -> None:
    requests = 64
    with Served(["IrisClassifier:latest"], cwd=packed) as server:
        def call(_: int) -> tuple[int, dict[str, str], object]:
            return server.post("/predict", [ROW])

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(call, range(requests)))
        assert all(answer[0] == 200 and answer[2] == [0] for answer in answers)
        _, text = server.get("/metrics")
    metrics = text.decode()

    def value(name: str) -> float:
        found = re.search(rf'^{name}\{{[^}}]*method="predict"[^}}]*\}} (\S+)$', metrics, re.M)
        assert found, metrics[-2000:]
        return float(found.group(1))

    rows, batches = value("dosirak_runner_batch_size_sum"), value("dosirak_runner_batch_size_count")
    assert rows == requests  # every request's row ran once
    assert batches < requests  # and some ran together: the batcher merged requests


def test_run_prints_the_class(packed: Path) -> None:
    done = cli("run", "IrisClassifier:latest", "predict", "--input", "[[5.1, 3.5, 1.4, 0.2]]",
               cwd=packed)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [0]


def test_serve_defaults_to_port_5000_for_a_0x_service(packed: Path) -> None:
    """As 0.x served (seed 004's curl to localhost:5000); --port (the other tests) changes it."""
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", 5000))
        free = True
    except OSError:
        free = False  # something else has it: the server must then say it tried 5000
    finally:
        probe.close()
    command = [str(Path(sys.executable).parent / "dosirak"), "serve", "IrisClassifier:latest"]
    process = subprocess.Popen(command, cwd=packed, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        line = ""
        for line in process.stdout:
            if "ready at" in line or "error" in line.lower():
                break
        assert ("ready at http://127.0.0.1:5000 " if free else "5000") in line, line
    finally:
        process.terminate()
        process.wait(30)


def test_the_configuration_port_wins_over_5000(packed: Path) -> None:
    command = [str(Path(sys.executable).parent / "dosirak"), "serve", "IrisClassifier:latest"]
    process = subprocess.Popen(command, cwd=packed, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "DOSIRAK_CONFIG_OPTIONS": "api_server.port=0"})
    try:
        assert process.stdout is not None
        line = ""
        for line in process.stdout:
            if "ready at" in line or "error" in line.lower():
                break
        found = re.search(r"ready at http://127.0.0.1:(\d+) ", line)
        assert found and int(found.group(1)) != 5000, line
    finally:
        process.terminate()
        process.wait(30)


def test_load_returns_the_service_with_its_artifacts(packed: Path) -> None:
    code = ("import dosirak, json, sys\n"
            "path = dosirak.bentos.get('IrisClassifier:latest').path\n"
            "svc = dosirak.load(str(path))\n"
            "print(json.dumps([type(svc).__name__, svc.artifacts['model'].metadata,\n"
            "                  int(svc.artifacts.model.predict([[5.1, 3.5, 1.4, 0.2]])[0]),\n"
            "                  'bentoml' in sys.modules]))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=packed, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    # a module that imports dosirak leaves the name bentoml alone
    assert json.loads(done.stdout) == ["IrisClassifier", {}, 0, False]
