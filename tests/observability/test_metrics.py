"""Metrics in one process: series, bounded labels, the derived request counter, and the cost."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dosirak.config import load_config
from dosirak.observability.metrics import (
    CONTENT_TYPE,
    UNKNOWN_ENDPOINT,
    Metrics,
    NullMetrics,
    metrics_from_config,
)


@pytest.fixture(autouse=True)
def single_process(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)


def samples(body: bytes) -> dict[tuple[str, frozenset], float]:
    """Every sample of a /metrics body, by (name, labels)."""
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(body: bytes, name: str, **labels: str) -> float | None:
    return samples(body).get((name, frozenset(labels.items())))


def serve(metrics: Metrics, path: str, method: str, status: int, seconds: float) -> None:
    metrics.request_finished(metrics.request_started(path, method), status, seconds)


def test_requests_counted_timed_and_in_progress():
    metrics = Metrics(endpoints=["/classify", "/readyz"])
    for _ in range(3):
        serve(metrics, "/classify", "POST", 200, 0.0007)
    serve(metrics, "/classify", "POST", 400, 0.02)
    serve(metrics, "/readyz", "GET", 503, 0.0001)
    pending = metrics.request_started("/classify", "POST")
    body = metrics.render()
    ok = {"endpoint": "/classify", "http_method": "POST", "http_status": "200"}
    assert value(body, "dosirak_requests_total", **ok) == 3
    assert value(body, "dosirak_requests_total", **{**ok, "http_status": "400"}) == 1
    assert value(body, "dosirak_requests_total", endpoint="/readyz", http_method="GET",
                 http_status="503") == 1
    assert value(body, "dosirak_request_duration_seconds_count", **ok) == 3
    assert value(body, "dosirak_request_duration_seconds_sum", **ok) == pytest.approx(0.0021)
    assert value(body, "dosirak_request_duration_seconds_bucket", **ok, le="0.0005") == 0
    assert value(body, "dosirak_request_duration_seconds_bucket", **ok, le="0.001") == 3
    assert value(body, "dosirak_request_duration_seconds_bucket", **ok, le="+Inf") == 3
    in_progress = {"endpoint": "/classify", "http_method": "POST"}
    assert value(body, "dosirak_requests_in_progress", **in_progress) == 1
    metrics.request_finished(pending, 200, 0.001)
    body = metrics.render()
    assert value(body, "dosirak_requests_in_progress", **in_progress) == 0
    assert value(body, "dosirak_requests_total", **ok) == 4
    assert b"# TYPE dosirak_requests_total counter" in body
    assert CONTENT_TYPE.startswith("text/plain")


def test_labels_stay_bounded():
    metrics = Metrics(endpoints=["/classify"])
    for number in range(200):
        serve(metrics, f"/probe/{number}", "POST", 404, 0.0001)
        serve(metrics, "/classify", f"X-{number}", 405, 0.0001)
    serve(metrics, "/classify", "POST", 999, 0.0001)
    body = metrics.render().decode()
    assert "/probe/" not in body and "X-1" not in body
    unknown = {"endpoint": UNKNOWN_ENDPOINT, "http_method": "POST", "http_status": "404"}
    found = samples(body.encode())
    assert found[("dosirak_requests_total", frozenset(unknown.items()))] == 200
    other = {"endpoint": "/classify", "http_method": "OTHER", "http_status": "405"}
    assert found[("dosirak_requests_total", frozenset(other.items()))] == 200
    weird = {"endpoint": "/classify", "http_method": "POST", "http_status": "other"}
    assert found[("dosirak_requests_total", frozenset(weird.items()))] == 1
    totals = [key for key in found if key[0] == "dosirak_requests_total"]
    assert len(totals) == 3
    # Unknown paths and methods do not grow the per-process caches either.
    assert len(metrics._series) <= 3
    assert all(len(series.by_status) <= 2 for series in metrics._series.values())


def test_declared_endpoints():
    metrics = Metrics(endpoints=["/a"])
    assert metrics.endpoint("/a") == "/a"
    assert metrics.endpoint("/b") == UNKNOWN_ENDPOINT
    metrics.add_endpoint("/b")
    serve(metrics, "/b", "GET", 200, 0.001)
    assert value(metrics.render(), "dosirak_requests_total", endpoint="/b", http_method="GET",
                 http_status="200") == 1


def test_runner_series():
    metrics = Metrics()
    predict = metrics.runner_method("iris_clf", "predict")
    assert metrics.runner_method("iris_clf", "predict") is predict
    predict.batch(size=3, seconds=0.004)
    predict.batch(size=64, seconds=0.02)
    predict.queue_depth(17)
    predict.refused()
    predict.refused(2)
    body = metrics.render()
    labels = {"runner": "iris_clf", "method": "predict"}
    assert value(body, "dosirak_runner_batch_size_count", **labels) == 2
    assert value(body, "dosirak_runner_batch_size_sum", **labels) == 67
    assert value(body, "dosirak_runner_batch_size_bucket", **labels, le="4.0") == 1
    assert value(body, "dosirak_runner_batch_size_bucket", **labels, le="64.0") == 2
    assert value(body, "dosirak_runner_batch_duration_seconds_count", **labels) == 2
    assert value(body, "dosirak_runner_queue_depth", **labels) == 17
    assert value(body, "dosirak_runner_overload_refusals_total", **labels) == 3


def test_namespace_buckets_and_default_registry_from_config():
    config = load_config(environ={"DOSIRAK_CONFIG_OPTIONS":
                                  "metrics.namespace=shop metrics.duration_buckets=[0.01,0.1]"})
    metrics = metrics_from_config(config.metrics, endpoints=["/buy"])
    assert isinstance(metrics, Metrics)
    serve(metrics, "/buy", "POST", 200, 0.05)
    body = metrics.render()
    labels = {"endpoint": "/buy", "http_method": "POST", "http_status": "200"}
    assert value(body, "shop_requests_total", **labels) == 1
    buckets = sorted(dict(key[1])["le"] for key in samples(body)
                     if key[0] == "shop_request_duration_seconds_bucket")
    assert buckets == ["+Inf", "0.01", "0.1"]
    assert b"dosirak_" not in body
    # Single-process mode also serves prometheus_client's default registry (process figures).
    assert b"process_cpu_seconds_total" in body


def test_two_instances_do_not_collide():
    first, second = Metrics(), Metrics()
    serve(first, "/x", "GET", 200, 0.001)
    assert value(second.render(), "dosirak_requests_total", endpoint=UNKNOWN_ENDPOINT,
                 http_method="GET", http_status="200") is None


def test_disabled_metrics_do_nothing():
    config = load_config(environ={"DOSIRAK_CONFIG_OPTIONS": "metrics.enabled=false"})
    metrics = metrics_from_config(config.metrics, endpoints=["/a"])
    assert isinstance(metrics, NullMetrics) and not metrics.enabled
    series = metrics.request_started("/a", "GET")
    metrics.request_finished(series, 200, 0.1)
    method = metrics.runner_method("r", "m")
    method.batch(2, 0.1)
    method.queue_depth(3)
    method.refused()
    assert metrics.render() == b""


def test_request_path_cost():
    """Recording one request stays a few microseconds (figure printed with -s)."""
    metrics = Metrics(endpoints=["/classify"])
    started, finished = metrics.request_started, metrics.request_finished
    rounds, best = 2000, float("inf")
    for _ in range(7):
        begin = time.perf_counter()
        for _ in range(rounds):
            finished(started("/classify", "POST"), 200, 0.0007)
        best = min(best, (time.perf_counter() - begin) / rounds)
    print(f"single-process: {best * 1e6:.2f} us per request")
    assert best < 25e-6


def test_single_process_request_series_read_as_prometheus_client_would():
    """The in-memory request histogram (plain counters) renders what prometheus_client's own
    Histogram renders for the same observations, bounds included (``le`` is inclusive)."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from dosirak.observability.metrics import Metrics

    buckets = (0.001, 0.01, 0.1, 1.0)
    observed = [0.0005, 0.001, 0.001, 0.0100001, 0.1, 0.99, 1.0, 7.5, 0.0]
    metrics = Metrics(namespace="t", duration_buckets=buckets, endpoints=["/p"])
    reference_registry = CollectorRegistry()
    reference = Histogram("t_request_duration_seconds", "Time from request to response, "
                          "seconds.", ["endpoint", "http_method", "http_status"],
                          buckets=buckets, registry=reference_registry)
    for seconds in observed:
        series = metrics.request_started("/p", "POST")
        metrics.request_finished(series, 200, seconds)
        reference.labels("/p", "POST", "200").observe(seconds)
    ours = [line for line in metrics.render().decode().splitlines()
            if line.startswith("t_request_duration_seconds_")]
    theirs = [line for line in generate_latest(reference_registry).decode().splitlines()
              if line.startswith("t_request_duration_seconds_")
              and not line.startswith("t_request_duration_seconds_created")]
    assert ours == theirs and len(ours) == len(buckets) + 3
    assert 't_requests_in_progress{endpoint="/p",http_method="POST"} 0.0' in \
        metrics.render().decode()
