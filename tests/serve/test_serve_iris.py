"""The seed's iris service under ``dosirak serve``: answers, metadata, ids, metrics, logs."""

from __future__ import annotations

import json
import re

from conftest import IRIS_SERVICE, ROW, Served

REQUESTS_TOTAL = re.compile(r'^dosirak_requests_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$', re.M)


def request_counts(metrics: str) -> dict[tuple[str, str, str], float]:
    """``dosirak_requests_total`` samples by (endpoint, method, status)."""
    counts = {}
    for match in REQUESTS_TOTAL.finditer(metrics):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group("labels")))
        key = (labels["endpoint"], labels["http_method"], labels["http_status"])
        counts[key] = float(match.group("value"))
    return counts


def test_serves_the_seed_service_with_metadata_and_request_ids(iris_model) -> None:
    with Served([f"{IRIS_SERVICE}:svc"]) as server:
        # One startup line says where everything is.
        ready = next(line for line in server.lines if "is ready at" in line)
        assert f"Swagger UI: {server.url}/" in ready
        assert "iris_classifier" in ready and "iris_clf local" in ready

        assert server.get("/readyz") == (200, b"ready")
        status, headers, answer = server.post("/classify", ROW)
        assert status == 200
        assert answer == iris_model.predict(ROW).tolist()
        assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", headers["x-request-id"])
        status, headers, _ = server.post("/classify", ROW, {"x-request-id": "checkout-7f3a"})
        assert headers["x-request-id"] == "checkout-7f3a"
        # A 4xx answer carries the id too.
        status, headers, _ = server.post("/classify", "not an array",
                                         {"x-request-id": "bad-input-1"})
        assert status == 400 and headers["x-request-id"] == "bad-input-1"

        status, body = server.get("/metadata")
        metadata = json.loads(body)
        assert metadata["service"] == "iris_classifier"
        assert [api["route"] for api in metadata["apis"]] == ["/classify"]
        (runner,) = metadata["runners"]
        assert runner["name"] == "iris_clf" and runner["placement"] == "local"
        assert runner["methods"][0]["name"] == "predict" and runner["methods"][0]["batchable"]
        (model,) = runner["models"]
        assert model["tag"].startswith("iris_clf:")
        assert model["labels"] == {"owner": "tests"}
        assert model["metadata"]["accuracy"] > 0.9

        # The access log has one line per request, with the request's id.
        line = server.wait_for(r"request_id=checkout-7f3a method=POST path=/classify "
                               r"status=200 latency_ms=[\d.]+ request_bytes=22 "
                               r"response_bytes=\d+").group(0)
        assert "request_id=bad-input-1 method=POST path=/classify status=400" in \
            server.wait_for("request_id=bad-input-1").string
        assert line


def test_metrics_count_requests_and_batches_with_bounded_labels(iris_model) -> None:
    with Served([f"{IRIS_SERVICE}:svc"]) as server:
        for _ in range(3):
            assert server.post("/classify", ROW)[0] == 200
        status, body = server.get("/metrics")
        assert status == 200
        before = request_counts(body.decode())
        assert before[("/classify", "POST", "200")] == 3
        assert server.post("/classify", ROW)[0] == 200
        for path in ("/no-such-route-a1", "/no-such-route-b2", "/etc/passwd"):
            assert server.get(path)[0] == 404
        text = server.get("/metrics")[1].decode()
        after = request_counts(text)
        assert after[("/classify", "POST", "200")] == 4
        # Unknown paths share one series: a client probing URLs cannot create new ones.
        assert after[("__unknown__", "GET", "404")] == 3
        assert "no-such-route" not in text and "passwd" not in text
        assert {key[0] for key in after} <= {"/classify", "/readyz", "/metrics",
                                             "__unknown__"}
        # The runner's batches are counted and timed.
        batches = re.search(r'^dosirak_runner_batch_size_count\{method="predict",'
                            r'runner="iris_clf"\} (\S+)$', text, re.M)
        assert batches and float(batches.group(1)) >= 4
        assert re.search(r'^dosirak_request_duration_seconds_bucket\{endpoint="/classify",'
                         r'http_method="POST",http_status="200",le="\+Inf"\} 4\.0$', text, re.M)
        assert re.search(r'^dosirak_requests_in_progress\{endpoint="/metrics",'
                         r'http_method="GET"\} 1\.0$', text, re.M)


def test_access_log_as_json_lines_and_batching_from_config(iris_model) -> None:
    options = ("logging.access.format=json logging.prediction.enabled=true "
               "runners.iris_clf.batching.max_batch_size=8 runners.batching.max_latency_ms=40")
    with Served([f"{IRIS_SERVICE}:svc"], env={"DOSIRAK_CONFIG_OPTIONS": options}) as server:
        method = json.loads(server.get("/metadata")[1])["runners"][0]["methods"][0]
        assert (method["max_batch_size"], method["max_latency_ms"]) == (8, 40.0)
        assert server.post("/classify", ROW, {"x-request-id": "json-line-1"})[0] == 200
        access = json.loads(server.wait_for(r'^\{.*"request_id": ?"json-line-1".*"path"')
                            .string)
        assert access["logger"] == "dosirak.access"
        assert (access["method"], access["path"], access["status"]) == ("POST", "/classify",
                                                                        200)
        assert access["request_bytes"] == 22 and access["latency_ms"] > 0
        # The prediction log (opt-in) summarises input and output, never their values.
        prediction = json.loads(server.wait_for(r'^\{.*"logger": ?"dosirak.prediction"')
                                .string)
        assert prediction["request_id"] == "json-line-1"
        assert prediction["api"] == "classify"
        assert prediction["input"] == {"type": "ndarray", "shape": [1, 4], "dtype": "float64"}
        assert prediction["output"]["shape"] == [1]
