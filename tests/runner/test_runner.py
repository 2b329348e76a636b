"""The Runner API of the seeds: to_runner, init_local, run / async_run, custom Runnables, and
batching through a runner in-process and in a worker process."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets, svm
from sklearn.linear_model import LogisticRegression

import dosirak as bentoml
from dosirak.exceptions import BadInput, InvalidArgument, RunnerError, ServiceCodeError


@pytest.fixture
def iris():
    data = datasets.load_iris()
    return data.data, data.target


def test_seed_003_runner_calls(iris):
    x, y = iris
    clf = svm.SVC(gamma="scale").fit(x, y)
    bentoml.sklearn.save_model("demo_mnist", clf, signatures={"predict": {"batchable": False}})
    runner = bentoml.sklearn.get("demo_mnist:latest").to_runner()
    runner.init_local()
    row = [[5.9, 3.0, 5.1, 1.8]]
    assert runner.predict.run(row).tolist() == clf.predict(row).tolist()

    # The seed's second example: SVC has no __call__, so a '__call__' signature fails clearly.
    bentoml.sklearn.save_model("demo_mnist", clf, signatures={"__call__": {"batchable": False}})
    runner = bentoml.sklearn.get("demo_mnist:latest").to_runner()
    with pytest.raises(InvalidArgument, match="no method '__call__'"):
        runner.init_local()


def test_runner_of_a_model_without_call_signature_says_which_methods_exist(iris):
    x, y = iris
    bentoml.sklearn.save_model("iris_clf", LogisticRegression(max_iter=500).fit(x, y))
    runner = bentoml.sklearn.get("iris_clf").to_runner()
    runner.init_local()
    with pytest.raises(ServiceCodeError, match="predict"):  # the service's bug: a 500
        runner.run(x[:1])
    with pytest.raises(AttributeError, match="its methods"):
        _ = runner.transform


def test_a_runner_must_be_started_first(iris):
    x, y = iris
    bentoml.sklearn.save_model("iris_clf", LogisticRegression(max_iter=500).fit(x, y))
    runner = bentoml.sklearn.get("iris_clf").to_runner()
    with pytest.raises(RunnerError, match="init_local"):
        runner.predict.run(x[:1])


class Doubler(bentoml.Runnable):
    SUPPORTED_RESOURCES = ("cpu",)
    SUPPORTS_CPU_MULTI_THREADING = True

    def __init__(self, factor: int) -> None:
        self.factor = factor
        self.batches: list[int] = []

    @bentoml.Runnable.method(batchable=True, batch_dim=0)
    def scale(self, x: np.ndarray) -> np.ndarray:
        self.batches.append(len(x))
        return x * self.factor

    @bentoml.Runnable.method(batchable=True, batch_dim=1)
    def scale_columns(self, x: np.ndarray) -> np.ndarray:
        return x * self.factor

    @bentoml.Runnable.method(batchable=False)
    def fail(self, message: str) -> None:
        raise KeyError(message)

    @bentoml.Runnable.method
    def __call__(self, x):
        return x + self.factor


def test_custom_runnable_in_process():
    runner = bentoml.Runner(Doubler, name="doubler", runnable_init_params={"factor": 3})
    runner.init_local()
    assert runner.run(1) == 4
    assert runner.scale.run(np.arange(3)).tolist() == [0, 3, 6]
    with pytest.raises(KeyError, match="boom"):
        runner.fail.run("boom")


def test_concurrent_calls_are_batched_and_match_unbatched_results():
    runner = bentoml.Runner(Doubler, name="doubler", runnable_init_params={"factor": 2},
                            max_batch_size=16, max_latency_ms=5000)
    runner.init_local()
    inputs = [np.full((n % 3 + 1, 2), n, dtype=np.float64) for n in range(40)]
    columns = [np.full((2, n % 4 + 1), n, dtype=np.float64) for n in range(20)]

    async def main():
        rows = await asyncio.gather(*(runner.scale.async_run(x) for x in inputs))
        cols = await asyncio.gather(*(runner.scale_columns.async_run(x) for x in columns))
        return rows, cols

    rows, cols = asyncio.run(main())
    for x, out in zip(inputs, rows, strict=True):
        np.testing.assert_array_equal(out, x * 2)
    for x, out in zip(columns, cols, strict=True):
        np.testing.assert_array_equal(out, x * 2)
    batches = runner._runnable.batches
    assert max(batches) <= 16 and len(batches) < len(inputs), batches


def test_batched_dataframes_come_back_per_call():
    runner = bentoml.Runner(Doubler, name="doubler", runnable_init_params={"factor": 10})
    runner.init_local()
    frames = [pd.DataFrame({"a": [i, i + 1], "b": [0.5, 1.5]}) for i in range(10)]

    async def main():
        return await asyncio.gather(*(runner.scale.async_run(f) for f in frames))

    for frame, out in zip(frames, asyncio.run(main()), strict=True):
        pd.testing.assert_frame_equal(out, frame * 10)


def test_runner_in_a_worker_process_matches_in_process(iris):
    x, y = iris
    clf = LogisticRegression(max_iter=500).fit(x, y)
    bentoml.sklearn.save_model("iris_clf", clf)
    runner = bentoml.sklearn.get("iris_clf").to_runner(max_batch_size=32)

    async def main():
        await runner.start("process")
        try:
            answers = await asyncio.gather(*(runner.predict.async_run(x[i:i + 1])
                                             for i in range(len(x))))
            proba = await runner.predict_proba.async_run(x)
            try:  # refused in this process, from the width recorded at save time
                await runner.predict.async_run(np.zeros((1, 7)))
            except BadInput as error:
                failure = error
            return answers, proba, failure, runner.predict.dispatcher.stats()
        finally:
            await runner.stop()

    answers, proba, failure, stats = asyncio.run(main())
    assert np.concatenate(answers).tolist() == clf.predict(x).tolist()
    np.testing.assert_allclose(proba, clf.predict_proba(x))
    assert "the model takes rows of 4 features" in str(failure)
    assert stats.batches < len(x)  # concurrent calls were merged


def test_signature_override_in_to_runner(iris):
    x, y = iris
    bentoml.sklearn.save_model("iris_clf", LogisticRegression(max_iter=500).fit(x, y))
    runner = bentoml.sklearn.get("iris_clf").to_runner(
        signatures={"predict": {"batchable": False}}, max_latency_ms=20)
    assert runner.predict.signature.batchable is False
    with pytest.raises(InvalidArgument, match="max_batch_size"):
        bentoml.sklearn.get("iris_clf").to_runner(max_batch_size=0)
    with pytest.raises(InvalidArgument, match="unknown methods"):
        bentoml.sklearn.get("iris_clf").to_runner(method_configs={"nope": {}})
