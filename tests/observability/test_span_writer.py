"""The console exporter's lines, written by the worker itself or by its writer process: every
shape of span in the SDK's to_json() shape either way; a killed writer costs no line; a writer
ignores the signals a terminal sends its group and ends with its parent, even a SIGKILLed one."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import Link, SpanKind, StatusCode
from opentelemetry.trace.span import TraceState

from dosirak.observability.span_lines import SpanLines
from dosirak.observability.spans import SpanMaker, SpanRecorder


def recorder_with(exporter: SpanLines) -> SpanRecorder:
    # An interval no test waits for: spans leave on flush() only.
    return SpanRecorder([exporter], Resource.create({"service.name": "iris"}), interval=3600)


def spans_of_every_shape(maker: SpanMaker) -> list[object]:
    """Ended spans: the common ones (packed) and every kind a packed span cannot carry."""
    root = maker.start("POST /classify", None, SpanKind.SERVER,
                       {"http.request.method": "POST", "url.path": "/classify"})
    api = maker.start("api classify", root.get_span_context())
    api.set_attribute("rows", 2)
    api.set_attribute("features", ("a", "b"))
    batch = maker.start("batch iris.predict", None, SpanKind.INTERNAL, {"dosirak.batch.rows": 2},
                        [Link(api.get_span_context()), Link(root.get_span_context())], True)
    failed = maker.start("POST /boom", None, SpanKind.SERVER)
    failed.set_status(StatusCode.ERROR, "it broke")
    with_event = maker.start("api boom", failed.get_span_context())
    with_event.add_event("retry", {"attempt": 1})
    linked_with_attributes = maker.start("batch other", None, SpanKind.INTERNAL, None,
                                         [Link(api.get_span_context(), {"why": "test"})], True)
    remote = root.get_span_context()
    stated = maker.start("api stated", type(remote)(
        remote.trace_id, remote.span_id, True, remote.trace_flags,
        TraceState([("vendor", "value")])))
    percent = maker.start("GET /100%25", None, SpanKind.SERVER, {"url.path": "/100%"})
    spans = [api, root, batch, with_event, failed, linked_with_attributes, stated, percent]
    for span in spans:
        span.end()
    return spans


def exported_lines(path: Path, offload: bool) -> tuple[list[object], dict[str, dict]]:
    exporter = SpanLines(str(path), offload=offload)
    recorder = recorder_with(exporter)
    spans = spans_of_every_shape(SpanMaker(recorder, 1.0))
    recorder.flush()
    if offload:
        assert exporter.writer_pid is not None  # the lines really went through a writer
    recorder.shutdown()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return spans, {line["context"]["span_id"]: line for line in lines}


@pytest.mark.parametrize("offload", [False, True])
def test_every_shape_of_span_written_as_the_sdk_writes_it(tmp_path: Path, offload: bool) -> None:
    spans, written = exported_lines(tmp_path / "spans.jsonl", offload)
    assert len(written) == len(spans)
    for span in spans:
        sdk = json.loads(span.readable().to_json())  # type: ignore[attr-defined]
        line = written[f"0x{span.get_span_context().span_id:016x}"]  # type: ignore[attr-defined]
        # (times exact to the microsecond, where the SDK's go through a float)
        for shown in (sdk, line):
            shown["start_time"] = shown["end_time"] = 0
            for event in shown["events"]:
                event["timestamp"] = 0
        assert sdk == line


def wait_gone(pid: int, seconds: float) -> bool:
    """Whether process ``pid`` ended within ``seconds`` (a zombie not reaped yet has ended)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.02)
    return False


def test_a_killed_writer_costs_no_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "spans.jsonl"
    exporter = SpanLines(str(path), offload=True)
    recorder = recorder_with(exporter)
    maker = SpanMaker(recorder, 1.0)
    names = []
    for index in range(10):
        maker.start(f"span {index}", None).end()
        names.append(f"span {index}")
    recorder.flush()
    writer = exporter.writer_pid
    assert writer is not None
    deadline = time.monotonic() + 10
    while len(path.read_text().splitlines()) < 10 and time.monotonic() < deadline:
        time.sleep(0.02)  # the writer is up and wrote the first lines
    # It ignores SIGINT and SIGTERM (it has a session of its own, so a terminal's Ctrl-C does
    # not even reach it): the worker decides when it ends.
    os.kill(writer, signal.SIGINT)
    os.kill(writer, signal.SIGTERM)
    maker.start("span 10", None).end()
    names.append("span 10")
    recorder.flush()
    deadline = time.monotonic() + 10
    while len(path.read_text().splitlines()) < 11 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not wait_gone(writer, 0.1)  # still there, and writing
    os.kill(writer, signal.SIGKILL)
    assert wait_gone(writer, 10)
    with caplog.at_level(logging.WARNING, logger="dosirak.tracing"):
        for index in range(11, 20):
            maker.start(f"span {index}", None).end()
            names.append(f"span {index}")
        recorder.flush()
    assert any("span writer process failed" in message for message in caplog.messages)
    assert exporter.writer_pid is None
    for index in range(20, 25):  # and on, in this process
        maker.start(f"span {index}", None).end()
        names.append(f"span {index}")
    recorder.shutdown()
    written = [json.loads(line)["name"] for line in path.read_text().splitlines()]
    assert sorted(written) == sorted(names)


def test_the_writer_ends_with_its_parent_even_a_killed_one(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    program = textwrap.dedent(f"""
        import os, signal, sys
        from opentelemetry.sdk.resources import Resource
        from dosirak.observability.span_lines import SpanLines
        from dosirak.observability.spans import SpanMaker, SpanRecorder
        exporter = SpanLines({str(path)!r}, offload=True)
        recorder = SpanRecorder([exporter], Resource.create({{}}), interval=3600)
        maker = SpanMaker(recorder, 1.0)
        for index in range(100):
            maker.start(f"span {{index}}", None).end()
        recorder.flush()
        print(exporter.writer_pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    parent = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            timeout=60)
    assert parent.returncode == -signal.SIGKILL, parent.stderr
    writer = int(parent.stdout)
    assert wait_gone(writer, 10), "the writer outlived its parent"
    # everything handed over before the parent died was written
    assert len(path.read_text().splitlines()) == 100
