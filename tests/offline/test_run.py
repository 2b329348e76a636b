"""``dosirak run``: one call, no HTTP server, and the same answer as the HTTP API, byte for byte."""

from __future__ import annotations

import json

import httpx
import numpy as np

from conftest import dosirak_cli
from dosirak.offline.run import run_once
from dosirak.offline.target import load_target
from live_server import serve

SAMPLE = "[[5.9, 3.0, 5.1, 1.8], [4.9, 3.0, 1.4, 0.2]]"


def http_answer(target: str, route: str, body: bytes, content_type: str,
                accept: str | None = None) -> httpx.Response:
    svc = load_target(target)
    headers = {"content-type": content_type, **({"accept": accept} if accept else {})}
    with serve(svc) as url:
        return httpx.post(f"{url}{route}", content=body, headers=headers)


def test_iris_service_file_same_as_http(service_file, tmp_path):
    target = f"{service_file}:svc"
    done = dosirak_cli("run", target, "classify", "--input", SAMPLE)
    assert done.returncode == 0, done.stderr.decode()
    http = http_answer(target, "/classify", SAMPLE.encode(), "application/json")
    assert done.stdout == http.content + b"\n"
    assert json.loads(done.stdout) == [2, 0]


def test_module_target_and_npy_file_in_and_out(service_file, tmp_path):
    rows = np.array(json.loads(SAMPLE))
    np.save(tmp_path / "rows.npy", rows)
    done = dosirak_cli("run", "iris_service:svc", "classify", "--input-file", "rows.npy",
                       "--accept", "application/x-npy", "--output", "labels.npy",
                       cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    http = http_answer(f"{service_file}:svc", "/classify", (tmp_path / "rows.npy").read_bytes(),
                       "application/x-npy", accept="application/x-npy")
    assert (tmp_path / "labels.npy").read_bytes() == http.content
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), [2, 0])


def test_generic_config_same_as_http_with_envelope(generic_config):
    done = dosirak_cli("run", str(generic_config), "classify", "--input", SAMPLE)
    assert done.returncode == 0, done.stderr.decode()
    http = http_answer(str(generic_config), "/classify", SAMPLE.encode(), "application/json")
    assert done.stdout == http.content + b"\n"
    assert json.loads(done.stdout) == {"success": True, "message": "Success", "result": [2, 0]}


def test_failure_prints_the_same_body_and_exits_1(generic_config):
    done = dosirak_cli("run", str(generic_config), "classify", "--input", "[[5.9, 3.0,")
    assert done.returncode == 1
    body = json.loads(done.stdout)
    assert body["success"] is False and body["message"].startswith("Fail: malformed JSON")
    assert b"classify failed with status 400" in done.stderr
    http = http_answer(str(generic_config), "/classify", b"[[5.9, 3.0,", "application/json")
    assert http.status_code == 400 and http.json() == body


def test_run_once_in_process(generic_config, iris_clf):
    svc = load_target(str(generic_config))
    answer = run_once(svc, "one", b"[[5.9, 3.0, 5.1, 1.8]]",
                      "application/json")
    assert answer.ok and answer.content_type == "application/json"
    assert json.loads(answer.body) == [2]


def test_usage_errors_are_one_line(generic_config, service_file):
    neither = dosirak_cli("run", str(generic_config), "classify")
    assert neither.returncode == 1
    assert b"exactly one of --input TEXT or --input-file PATH" in neither.stderr
    unknown = dosirak_cli("run", str(generic_config), "nope", "--input", "[]")
    assert unknown.returncode == 1 and b"has no API 'nope'" in unknown.stderr
    missing = dosirak_cli("run", "missing.yaml", "classify", "--input", "[]")
    assert missing.returncode == 1 and b"there is no such file" in missing.stderr
    assert b"Traceback" not in neither.stderr + unknown.stderr + missing.stderr
