"""What the runner's code set and what the configuration file sets, served for real: the order
of precedence of ``dosirak.config.RunnersConfig``, down to the dispatcher that batches."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import dosirak
from dosirak.config import load_config
from dosirak.io import NumpyNdarray
from dosirak.server.app import configure_runners
from dosirak.signature import DEFAULT_MAX_BATCH_SIZE
from live_server import serve


@pytest.fixture()
def iris_model() -> dosirak.Model:
    x, y = load_iris(return_X_y=True)
    return dosirak.sklearn.save_model("iris_clf", LogisticRegression(max_iter=300).fit(x, y),
                                      signatures={"predict": {"batchable": True}})


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "serving.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def service(runner: dosirak.Runner) -> dosirak.Service:
    svc = dosirak.Service("iris_classifier", runners=[runner])

    @svc.api(input=NumpyNdarray(), output=NumpyNdarray())
    async def classify(x: np.ndarray) -> np.ndarray:
        return await runner.predict.async_run(x)

    return svc


def test_the_value_from_code_wins_over_the_files_runners_default(
        tmp_path: Path, iris_model: dosirak.Model) -> None:
    # The code asks for the built-in value itself: it is still the code's choice, not "unset".
    assert DEFAULT_MAX_BATCH_SIZE == 100
    config = load_config(config_file(tmp_path, "runners:\n  batching:\n    max_batch_size: 7\n"
                                                "    max_latency_ms: 250\n  workers: 3\n"))
    coded = iris_model.to_runner(name="coded", max_batch_size=100, workers=2)
    free = iris_model.to_runner(name="free")
    svc = service(coded)
    svc.add_runner(free)
    with serve(svc, config=config) as url:
        answer = httpx.post(f"{url}/classify", json=[[5.9, 3.0, 5.1, 1.8]])
        assert answer.status_code == 200, answer.text
        # The dispatchers batching for the server hold the resolved limits.
        assert coded.predict.dispatcher.max_batch_size == 100
        assert free.predict.dispatcher.max_batch_size == 7
        # What code left unset comes from the file; the rest stays the code's.
        assert coded.predict.dispatcher.max_latency_ms == free.predict.dispatcher.max_latency_ms \
            == 250
    assert (coded.workers, free.workers) == (2, 3)


def test_a_runners_own_section_wins_over_its_code_and_reconfiguring_starts_over(
        tmp_path: Path, iris_model: dosirak.Model) -> None:
    runner = iris_model.to_runner(max_batch_size=100, max_latency_ms=40)
    svc = service(runner)
    own = load_config(config_file(tmp_path, "runners:\n  batching:\n    max_batch_size: 7\n"
                                             "  iris_clf:\n    batching:\n"
                                             "      max_batch_size: 5\n"))
    configure_runners(svc, own, "local")
    assert (runner.predict.max_batch_size, runner.predict.max_latency_ms) == (5, 40)
    # A second configuration sees what the code set, not what the first one made of it.
    configure_runners(svc, load_config(config_file(tmp_path, "runners: {}\n")), "local")
    assert (runner.predict.max_batch_size, runner.predict.max_latency_ms) == (100, 40)
    off = load_config(config_file(tmp_path, "runners:\n  batching:\n    enabled: false\n"))
    configure_runners(svc, off, "local")
    assert runner.predict.max_batch_size == 1
    configure_runners(svc, load_config(config_file(tmp_path, "runners: {}\n")), "local")
    assert runner.predict.max_batch_size == 100
