"""Fixtures of the serve tests. ``Served`` (a real ``dosirak serve`` process, stopped by pid)
lives in tests/live_server.py and is re-exported here for the tests that import it from conftest.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sklearn import datasets
from sklearn.linear_model import LogisticRegression

import dosirak
from live_server import DOSIRAK, READY, Served, children_of, descendants_of, kill

__all__ = ["DOSIRAK", "READY", "Served", "children_of", "descendants_of", "kill"]

REPO = Path(__file__).resolve().parents[2]
IRIS_SERVICE = REPO / "examples" / "iris" / "service.py"
ROW = [[5.1, 3.5, 1.4, 0.2]]


def wait_until(condition: Any, timeout: float, interval: float = 0.02) -> Any:
    """Poll ``condition()`` until it is truthy; return its value (AssertionError on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@pytest.fixture
def iris_model() -> LogisticRegression:
    """The seeds' iris classifier, saved as iris_clf in this test's model store."""
    iris = datasets.load_iris()
    clf = LogisticRegression(max_iter=1000, random_state=0).fit(iris.data, iris.target)
    dosirak.sklearn.save_model("iris_clf", clf, labels={"owner": "tests"},
                               metadata={"accuracy": float(clf.score(iris.data, iris.target))},
                               signatures={"predict": {"batchable": True, "batch_dim": 0}})
    return clf


@pytest.fixture
def service_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory for a test's own service files."""
    directory = tmp_path / "svc"
    directory.mkdir()
    yield directory
