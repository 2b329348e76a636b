"""OpenTelemetry tracing on a real server: spans checked with the SDK's in-memory exporter and
exported over OTLP/HTTP to a receiver here that decodes the protobuf; the batch span links back
to every request it served, with placement local and process; nothing of OpenTelemetry is
imported when tracing is off."""

from __future__ import annotations

import concurrent.futures
import datetime
import http.server
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import dosirak
from dosirak.config import load_config
from dosirak.exceptions import BadInput
from dosirak.io import Text
from dosirak.server.app import create_app
from live_server import serve

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from example_services import iris_service

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{PARENT_TRACE}-00f067aa0ba902b7-01"


def traced_config(tmp_path: Path, **options: object) -> object:
    return load_config(environ={}, overrides={
        "tracing.enabled": True, "tracing.exporter": "console",
        "tracing.console_file": str(tmp_path / "spans.jsonl"), **options})


def call_concurrently(url: str, count: int) -> list[httpx.Response]:
    def one(index: int) -> httpx.Response:
        headers = {"traceparent": TRACEPARENT} if index == 0 else {}
        return httpx.post(f"{url}/classify", json=ROWS, headers=headers, timeout=30)

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


@pytest.mark.parametrize("placement", ["local", "process"])
def test_spans_per_request_api_call_and_batch_linked_to_every_request(
        tmp_path: Path, placement: str, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(iris_service(), config=traced_config(
        tmp_path, **{"runners.placement": placement,
                     "runners.batching.max_latency_ms": 30_000}))  # no shedding on a busy box
    memory = InMemorySpanExporter()
    app.state.tracing.add_exporter(memory)
    with caplog.at_level(logging.INFO, logger="dosirak.access"), serve(app) as url:
        answers = call_concurrently(url, 12)
        assert all(answer.status_code == 200 for answer in answers)
    spans = memory.get_finished_spans()
    http_spans = [s for s in spans if s.name == "POST /classify"]
    api_spans = [s for s in spans if s.name == "api classify"]
    batch_spans = [s for s in spans if s.name == "batch iris_clf.predict"]
    assert len(http_spans) == len(api_spans) == 12
    assert all(s.attributes["http.response.status_code"] == 200 for s in http_spans)
    # each API call is a child of its request's span
    by_id = {s.context.span_id: s for s in http_spans}
    for api in api_spans:
        assert api.parent is not None and api.parent.span_id in by_id
        assert api.context.trace_id == by_id[api.parent.span_id].context.trace_id
    # the incoming traceparent is continued
    assert sum(format(s.context.trace_id, "032x") == PARENT_TRACE for s in http_spans) == 1
    # every request's API call is linked from the batch that carried its rows
    linked = [link.context.span_id for batch in batch_spans for link in batch.links]
    assert sorted(linked) == sorted(s.context.span_id for s in api_spans)
    assert sum(batch.attributes["dosirak.batch.rows"] for batch in batch_spans) == 24
    assert all(batch.parent is None for batch in batch_spans)  # a trace of its own
    # the access lines carry the trace ids of the requests
    logged = {line.split("trace_id=")[1] for line in caplog.messages
              if "path=/classify" in line}
    assert logged == {format(s.context.trace_id, "032x") for s in http_spans}
    # the console exporter wrote the spans to its file, one JSON object a line, in the SDK's
    # to_json() shape (times exact to the microsecond, where the SDK's go through a float)
    lines = [json.loads(line) for line in (tmp_path / "spans.jsonl").read_text().splitlines()]
    written = {line["context"]["span_id"]: line for line in lines}
    for span in spans:
        line = written[f"0x{span.context.span_id:016x}"]
        assert line["start_time"] == iso_time(span.start_time)
        assert line["end_time"] == iso_time(span.end_time)
        assert {**json.loads(span.to_json()), "start_time": 0, "end_time": 0} == \
            {**line, "start_time": 0, "end_time": 0}


def iso_time(nanoseconds: int) -> str:
    moment = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=nanoseconds // 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_errors_on_spans_a_traceback_only_for_failures(tmp_path: Path) -> None:
    svc = dosirak.Service("judge")

    @svc.api(input=Text(), output=Text())
    def judge(text: str) -> str:
        if text == "bad":
            raise BadInput("bad is refused")
        if text == "bug":
            raise ValueError("a bug in the service")
        return text

    app = create_app(svc, config=traced_config(tmp_path))
    memory = InMemorySpanExporter()
    app.state.tracing.add_exporter(memory)
    with serve(app) as url:
        assert [httpx.post(f"{url}/judge", content=text).status_code
                for text in ("good", "bad", "bug")] == [200, 400, 500]
    spans = memory.get_finished_spans()
    api = {s.parent.span_id: s for s in spans if s.name == "api judge"}
    good, bad, bug = sorted((s for s in spans if s.name == "POST /judge"),
                            key=lambda s: s.start_time)
    assert good.status.status_code.name == "UNSET" and not api[good.context.span_id].events
    # the client's error: its type and message on the API span, no stack trace formatted
    assert bad.status.status_code.name == "UNSET"
    refused = api[bad.context.span_id]
    assert refused.status.status_code.name == "ERROR"
    [event] = refused.events
    assert dict(event.attributes) == {"exception.type": "dosirak.exceptions.BadInput",
                                      "exception.message": "bad is refused"}
    # a failure inside the service: the traceback, and the request's span is an error too
    assert bug.status.status_code.name == "ERROR"
    [event] = api[bug.context.span_id].events
    assert event.attributes["exception.type"] == "ValueError"
    assert "in judge" in event.attributes["exception.stacktrace"]


def test_api_code_reaches_its_span_through_opentelemetry(tmp_path: Path) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    own = InMemorySpanExporter()  # the service's own tracer, as its author would set it up
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(own))
    tracer = provider.get_tracer("user")
    svc = dosirak.Service("echo")

    @svc.api(input=Text(), output=Text())
    def echo(text: str) -> str:
        trace.get_current_span().set_attribute("echo.length", len(text))
        trace.get_current_span().add_event("echoed", {"echo.text": text})
        with tracer.start_as_current_span("inner work"):
            return text

    app = create_app(svc, config=traced_config(tmp_path))
    memory = InMemorySpanExporter()
    app.state.tracing.add_exporter(memory)
    with serve(app) as url:
        assert httpx.post(f"{url}/echo", content="hello").text == "hello"
    [api] = [s for s in memory.get_finished_spans() if s.name == "api echo"]
    assert api.attributes["echo.length"] == 5
    assert [(e.name, dict(e.attributes)) for e in api.events] == [("echoed",
                                                                    {"echo.text": "hello"})]
    [inner] = own.get_finished_spans()
    assert inner.parent.span_id == api.context.span_id
    assert inner.context.trace_id == api.context.trace_id


class _Receiver(http.server.BaseHTTPRequestHandler):
    requests: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.requests.append((self.path, self.headers["content-type"], body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    requests: list[tuple[str, str, bytes]] = []
    handler = type("Receiver", (_Receiver,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", requests
    finally:
        server.shutdown()
        thread.join(10)


def test_spans_exported_over_otlp_http(receiver: tuple[str, list]) -> None:
    endpoint, requests = receiver
    config = load_config(environ={}, overrides={
        "tracing.enabled": True, "tracing.endpoint": endpoint,
        "tracing.service_name": "iris-under-test"})
    with serve(iris_service(), config=config) as url:
        assert all(r.status_code == 200 for r in call_concurrently(url, 4))
    # the lifespan's end flushed the exporter
    names: list[str] = []
    services = set()
    for path, content_type, body in requests:
        assert path == "/v1/traces" and content_type == "application/x-protobuf"
        decoded = ExportTraceServiceRequest.FromString(body)
        for resource_spans in decoded.resource_spans:
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "service.name":
                    services.add(attribute.value.string_value)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    names.append(span.name)
                    if span.name.startswith("batch "):
                        assert len(span.links) >= 1
    assert services == {"iris-under-test"}
    assert names.count("POST /classify") == 4 and names.count("api classify") == 4
    assert any(name == "batch iris_clf.predict" for name in names)


def exported_spans(requests: list[tuple[str, str, bytes]]) -> list[dict[str, object]]:
    """Every span the receiver got: name, ids (hex), parent id and attributes."""
    spans = []
    for _, _, body in list(requests):
        for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {a.key: getattr(a.value, a.value.WhichOneof("value"))
                                  for a in span.attributes}
                    spans.append({"name": span.name, "trace": span.trace_id.hex(),
                                  "id": span.span_id.hex(), "parent": span.parent_span_id.hex(),
                                  "attributes": attributes})
    return spans


def wait_for_spans(requests: list, ready: object, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while not ready(spans := exported_spans(requests)):  # type: ignore[operator]
        assert time.monotonic() < deadline, f"spans not exported in time: {spans}"
        time.sleep(0.05)
    return spans


def test_a_span_per_call_inside_the_runner_worker_process(
        receiver: tuple[str, list], monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint, requests = receiver
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # export every 50 ms, here and in workers
    config = load_config(environ={}, overrides={
        "tracing.enabled": True, "tracing.endpoint": endpoint,
        "runners.placement": "process", "runners.batching.max_latency_ms": 30_000})
    svc = iris_service()
    runner = svc.runners[0]
    with serve(svc, config=config) as url:
        assert all(r.status_code == 200 for r in call_concurrently(url, 12))

        def batches_and_workers(spans: list[dict]) -> tuple[list[dict], list[dict]]:
            return ([s for s in spans if s["name"] == "batch iris_clf.predict"],
                    [s for s in spans if s["name"] == "worker iris_clf.predict"])

        def settled(spans: list[dict]) -> bool:
            # API spans end after their batch's: with all 12 exported, so are the batches
            batches, workers = batches_and_workers(spans)
            api_calls = [s for s in spans if s["name"] == "api classify"]
            return len(api_calls) == 12 and len(batches) == len(workers)

        spans = wait_for_spans(requests, settled)
        batches, workers = batches_and_workers(spans)
        # each batch's call into the worker process has one span there, the batch's child
        by_id = {s["id"]: s for s in batches}
        assert sorted(s["parent"] for s in workers) == sorted(by_id)
        assert all(s["trace"] == by_id[s["parent"]]["trace"] for s in workers)
        [pid] = runner._pool.pids
        assert {s["attributes"]["process.pid"] for s in workers} == {pid}
        assert {s["attributes"]["dosirak.runner.worker"] for s in workers} == {0}

        # a restarted worker is told to trace too
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while runner._pool.pids in ([], [pid]):
            assert time.monotonic() < deadline, "the runner worker was not restarted"
            time.sleep(0.05)
        [restarted] = runner._pool.pids
        assert all(r.status_code == 200 for r in call_concurrently(url, 6))
    spans = exported_spans(requests)  # the server's stop flushed it, the worker's EOF its own
    batches, workers = batches_and_workers(spans)
    by_id = {s["id"]: s for s in batches}
    later = [s for s in workers if s["attributes"]["process.pid"] == restarted]
    assert later and all(by_id[s["parent"]]["trace"] == s["trace"] for s in later)
    assert len(workers) == len(batches)


def test_spans_recorded_are_written_when_the_process_ends_without_stopping(
        tmp_path: Path) -> None:
    script = f"""
from types import SimpleNamespace
from dosirak.observability.tracing import Tracing
config = SimpleNamespace(exporter="console", endpoint="", sample_rate=1.0, service_name="s",
                         console_file={str(tmp_path / "spans.jsonl")!r})
tracing = Tracing(config, "s")
tracing.spans.start("left behind", None).end()
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    [line] = (tmp_path / "spans.jsonl").read_text().splitlines()
    assert json.loads(line)["name"] == "left behind"


def test_nothing_of_opentelemetry_is_imported_when_off(tmp_path: Path) -> None:
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
sys.path.insert(0, {str(Path(__file__).resolve().parents[1] / "server")!r})
import httpx
from example_services import iris_service
from live_server import serve
with serve(iris_service()) as url:
    assert httpx.post(url + "/classify", json=[[1, 2, 3, 4]]).status_code == 200
    assert httpx.post(url + "/v2/models/classify/infer", json={{"inputs": [{{"name": "rows",
        "datatype": "FP64", "shape": [1, 4], "data": [1, 2, 3, 4]}}]}}).status_code == 200
print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, env={"DOSIRAK_HOME": str(tmp_path / "home"),
                                              "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1].replace("'", '"')) == []
