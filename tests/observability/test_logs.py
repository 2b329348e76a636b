"""Access and prediction logs: line contents, text and JSON forms, switching on and off."""

from __future__ import annotations

import io
import json
import logging
import re
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pydantic import BaseModel

from dosirak.config import load_config
from dosirak.observability.access_log import ACCESS_LOGGER, MAX_LOGGED_PATH, AccessLog
from dosirak.observability.log_setup import (
    TextLineFormatter,
    configure_logger,
    configure_logging,
)
from dosirak.observability.prediction_log import (
    MAX_REPR,
    PREDICTION_LOGGER,
    PredictionLog,
    summarize,
)

TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture(autouse=True)
def fresh_loggers():
    """The loggers are process-wide: give each test clean ones and leave them clean."""
    def reset():
        for name in (ACCESS_LOGGER, PREDICTION_LOGGER):
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.setLevel(logging.NOTSET)
            logger.disabled = False
            logger.propagate = True
    reset()
    yield
    reset()


def configured(options: str = "") -> io.StringIO:
    stream = io.StringIO()
    config = load_config(environ={"DOSIRAK_CONFIG_OPTIONS": options})
    configure_logging(config.logging, stream=stream)
    return stream


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_access_text_line():
    stream = configured()
    AccessLog().record("abc-1", "POST", "/classify", 200, 0.41234, 52, 8)
    AccessLog().record("abc-2", "GET", "/metrics", 200, 12.5)
    first, second = lines(stream)
    assert re.fullmatch(TIMESTAMP + r" request_id=abc-1 method=POST path=/classify status=200 "
                        r"latency_ms=0\.412 request_bytes=52 response_bytes=8", first)
    assert second.endswith("request_bytes=- response_bytes=-")


def test_access_json_line():
    stream = configured("logging.access.format=json")
    AccessLog().record("abc-1", "POST", "/classify", 201, 3.14159, 52, 8)
    (line,) = lines(stream)
    record = json.loads(line)
    assert re.fullmatch(TIMESTAMP, record.pop("time"))
    assert record == {"logger": "dosirak.access", "request_id": "abc-1", "method": "POST",
                      "path": "/classify", "status": 201, "latency_ms": 3.142,
                      "request_bytes": 52, "response_bytes": 8}


def test_client_text_cannot_forge_lines():
    stream = configured()
    log = AccessLog()
    log.record("id", "GET", '/a b\nrequest_id=forged status=200 "x"', 404, 1.0, 0, 0)
    log.record("id", "GET", "/" + "p" * 5000, 404, 1.0, 0, 0)
    injected, long = lines(stream)  # two records, two lines
    fields = dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', injected.split(" ", 1)[1]))
    assert fields["request_id"] == "id" and fields["status"] == "404"
    assert json.loads(fields["path"]) == '/a b\nrequest_id=forged status=200 "x"'
    assert len(long) < MAX_LOGGED_PATH + 200 and "ppp..." in long


def test_disabled_access_log_builds_nothing():
    stream = configured("logging.access.enabled=false")
    handled = []
    logger = logging.getLogger(ACCESS_LOGGER)
    counting = logging.Handler()
    counting.emit = handled.append
    logger.addHandler(counting)
    log = AccessLog()
    assert not log.enabled
    log.record("id", "GET", "/", 200, 1.0, 0, 0)
    assert handled == [] and stream.getvalue() == ""
    # Switched on again, the same call writes.
    configure_logger(ACCESS_LOGGER, enabled=True, stream=stream)
    assert log.enabled
    log.record("id", "GET", "/", 200, 1.0, 0, 0)
    assert len(handled) == 1


def test_operator_handlers_are_kept_and_ours_not_doubled():
    logger = logging.getLogger(ACCESS_LOGGER)
    theirs = io.StringIO()
    logger.addHandler(logging.StreamHandler(theirs))
    ours = configured()
    AccessLog().record("id", "GET", "/", 200, 1.0, 0, 0)
    assert ours.getvalue() == "" and "request_id=id" in theirs.getvalue()

    logger.handlers.clear()
    stream = configured()
    configure_logging(load_config(environ={}).logging, stream=stream)  # again: still one line
    AccessLog().record("id", "GET", "/", 200, 1.0, 0, 0)
    assert len(lines(stream)) == 1
    assert logger.propagate is False  # the root logger does not print it a second time


def test_prediction_log_is_opt_in():
    stream = configured()
    log = PredictionLog()
    assert not log.enabled
    log.record("id", "classify", np.zeros((1, 4)), np.zeros(1))
    assert stream.getvalue() == ""


def test_prediction_json_line_has_summaries_not_values():
    stream = configured("logging.prediction.enabled=true")
    features = np.full((3, 4), 12345.678)
    PredictionLog().record("abc-1", "classify", features, np.array([2, 0, 1]), 0.8)
    (line,) = lines(stream)
    assert "12345" not in line
    record = json.loads(line)
    assert record["logger"] == "dosirak.prediction"
    assert record["request_id"] == "abc-1" and record["api"] == "classify"
    assert record["latency_ms"] == 0.8
    assert record["input"] == {"type": "ndarray", "shape": [3, 4], "dtype": "float64"}
    assert record["output"] == {"type": "ndarray", "shape": [3], "dtype": "int64"}


def test_prediction_text_line():
    stream = configured("logging.prediction.enabled=true logging.prediction.format=text")
    PredictionLog().record("abc-1", "echo", "secret text", ["a", "b"])
    (line,) = lines(stream)
    assert re.fullmatch(TIMESTAMP + r' request_id=abc-1 api=echo latency_ms=- '
                        r'input="str\(length=11\)" output="list\(length=2\)"', line)
    assert "secret" not in line


class Order(BaseModel):
    item: str
    quantity: int


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_summaries():
    frame = pd.DataFrame({"sepal_length": [5.1, 4.9], "label": ["a", "b"]})
    assert summarize(frame) == {"type": "DataFrame", "shape": [2, 2],
                                "columns": ["sepal_length", "label"]}
    assert summarize(frame["label"]) == {"type": "Series", "shape": [2], "dtype": "object"}
    assert summarize(np.int64(3))["type"] == "int64"
    assert summarize(b"\x00" * 10) == {"type": "bytes", "length": 10}
    assert summarize((1, 2, 3)) == {"type": "tuple", "length": 3}
    wide = {f"k{n}": n for n in range(50)}
    assert summarize(wide) == {"type": "dict", "length": 50,
                               "keys": [f"k{n}" for n in range(10)]}
    assert summarize(None) == {"type": "NoneType", "repr": "None"}
    assert summarize(2.5) == {"type": "float", "repr": "2.5"}
    assert summarize(Image.new("RGB", (8, 6))) == {"type": "Image", "size": [8, 6],
                                                   "mode": "RGB"}
    order = summarize(Order(item="x" * 500, quantity=2))
    assert order["type"] == "Order" and len(order["repr"]) == MAX_REPR + 3
    assert summarize(Unprintable()) == {"type": "Unprintable", "repr": "<Unprintable>"}


def test_timestamps_match_the_record_time():
    from datetime import UTC, datetime

    formatter = TextLineFormatter()
    for created in (0.0, 1700000000.9996, 1700000001.0, 1700000001.5004, 1699999999.25):
        record = logging.LogRecord("x", logging.INFO, __file__, 0, "m", None, None)
        record.created = created
        expected = datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        assert formatter.format(record) == expected + "Z m"


def test_access_line_cost(tmp_path):
    """An enabled access log written to a real file (figure printed with -s)."""
    with open(tmp_path / "access.log", "w") as file:
        configure_logger(ACCESS_LOGGER, enabled=True, stream=file)
        record = AccessLog().record
        best = float("inf")
        for _ in range(5):
            begin = time.perf_counter()
            for _ in range(2000):
                record("0e76f843687e-1", "POST", "/classify", 200, 0.41, 52, 8)
            best = min(best, (time.perf_counter() - begin) / 2000)
    print(f"access log, text to a file: {best * 1e6:.2f} us per line")
    assert best < 60e-6
    assert len((tmp_path / "access.log").read_text().splitlines()) == 10000
