"""Real servers for the client tests: uvicorn on 127.0.0.1, one per module, each with a recorder
of what reached it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sklearn.linear_model import LogisticRegression

from dosirak.server.app import create_app
from live_server import serve

from .services import Recorder, iris_service, media_service, save_iris, table_service


@dataclass
class Served:
    """A running server: its URL and what it has seen."""

    url: str
    recorder: Recorder


@pytest.fixture(scope="module")
def iris_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LogisticRegression]:
    """``iris_clf`` saved in a store of this module (the servers load it at startup)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOSIRAK_HOME", str(tmp_path_factory.mktemp("client") / "home"))
        yield save_iris()


@pytest.fixture(scope="module")
def iris(iris_model: LogisticRegression) -> Iterator[Served]:
    recorder = Recorder(create_app(iris_service()))
    with serve(recorder) as url:
        yield Served(url, recorder)


@pytest.fixture(scope="module")
def tables() -> Iterator[Served]:
    recorder = Recorder(create_app(table_service()))
    with serve(recorder) as url:
        yield Served(url, recorder)


@pytest.fixture(scope="module")
def media() -> Iterator[Served]:
    recorder = Recorder(create_app(media_service()))
    with serve(recorder) as url:
        yield Served(url, recorder)
