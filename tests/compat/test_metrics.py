"""``dosirak.metrics`` over a real ``dosirak serve`` with two API workers: metrics created at
import time in the service module, updated by the APIs, exposed on ``/metrics`` summed over the
workers, whichever worker answers the scrape."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import dosirak as bentoml
from dosirak.exceptions import InvalidArgument

from .serving import served

SERVICE = '''
import os

import dosirak as bentoml
from dosirak.io import JSON

inference_duration = bentoml.metrics.Histogram(
    name="inference_duration", documentation="Duration of inference",
    labelnames=["model"], buckets=(0.001, 0.01, 0.1, 1.0))
polarity = bentoml.metrics.Counter(name="polarity_total", documentation="Answers by polarity",
                                   labelnames=["polarity"])
in_flight = bentoml.metrics.Gauge(name="in_flight", documentation="Calls in flight",
                                  multiprocess_mode="livesum")
sizes = bentoml.metrics.Summary(name="input_size", documentation="Input sizes")

svc = bentoml.Service("metrics_demo")


@svc.api(input=JSON(), output=JSON())
def predict(body):
    in_flight.inc()
    with inference_duration.labels(model="m").time():
        polarity.labels(polarity="positive" if body["x"] > 0 else "negative").inc()
        sizes.observe(len(str(body)))
    in_flight.dec()
    return {"pid": os.getpid()}
'''


def _value(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    assert match, f"{series} not in /metrics:\n{text[:3000]}"
    return float(match.group(1))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_custom_metrics_are_summed_over_workers(tmp_path: Path, workers: str) -> None:
    with served(tmp_path, SERVICE, "svc", "--workers", workers) as server:
        pids = set()
        for index in range(30):
            status, _, body = server.post("/predict", {"x": 1 if index % 3 else -1})
            assert status == 200
            pids.add(body["pid"])
        if workers == "2":
            assert len(pids) == 2, "both workers should have answered some calls"
        for _ in range(3):  # whichever worker answers the scrape, the totals are the same
            status, text = server.get("/metrics")
            text = text.decode()
            assert _value(text, 'polarity_total{polarity="positive"}') == 20
            assert _value(text, 'polarity_total{polarity="negative"}') == 10
            assert _value(text, 'inference_duration_count{model="m"}') == 30
            assert _value(text, 'inference_duration_bucket{le="+Inf",model="m"}') == 30
            assert _value(text, "input_size_count") == 30
            assert _value(text, "in_flight") == 0
            assert "dosirak_requests_total" in text  # dosirak's own series are still there


def test_the_same_metric_twice_is_the_same_object() -> None:
    first = bentoml.metrics.Counter("reused_total", "x", ["a"])
    assert bentoml.metrics.Counter("reused_total", "x", ["a"]) is first
    with pytest.raises(InvalidArgument, match="another name"):
        bentoml.metrics.Gauge("reused", "x")
