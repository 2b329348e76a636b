"""Seed 002 (Korean notes on BentoML services, APIs and IO descriptors) over real HTTP.

Run with ``import dosirak as bentoml``. The seed's code is kept as written where it can run; it
changes where the seed itself cannot run: ``await`` inside a sync function (the seed's validated
example), an external feature store reached with aiohttp (the async example; no network here),
and ``np.ndarray(...)`` with an Ellipsis. Two versions of ``iris_clf`` give two runners with the
same default name, so the async example names them (``to_runner(name=...)``), as BentoML also
requires; the seed's author notes that this example failed for them.
"""

from __future__ import annotations

import asyncio
import json
import time
import typing as t

import httpx
import numpy as np
import pytest
from pydantic import BaseModel
from sklearn import datasets, svm
from sklearn.linear_model import LogisticRegression

import dosirak as bentoml
from dosirak.io import Json, Multipart, NumpyNdarray
from live_server import serve

SAMPLE = [[5.9, 3.0, 5.1, 1.8], [4.9, 3.0, 1.4, 0.2]]


@pytest.fixture
def iris_clf() -> svm.SVC:
    """Train and save ``iris_clf`` as the seeds' tutorial does."""
    iris = datasets.load_iris()
    clf = svm.SVC(gamma="scale").fit(iris.data, iris.target)
    bentoml.sklearn.save_model("iris_clf", clf)
    return clf


def test_iris_classifier(iris_clf: svm.SVC) -> None:
    iris_clf_runner = bentoml.sklearn.get("iris_clf:latest").to_runner()

    svc = bentoml.Service("iris_classifier", runners=[iris_clf_runner])

    @svc.api(input=NumpyNdarray(), output=NumpyNdarray())
    def classify(input_series: np.ndarray) -> np.ndarray:
        result = iris_clf_runner.predict.run(input_series)
        return result

    with serve(svc) as url:
        response = httpx.post(f"{url}/classify", json=SAMPLE)
        assert response.status_code == 200
        assert response.json() == iris_clf.predict(np.array(SAMPLE)).tolist() == [2, 0]
        # The seed's curl: -d with no Content-Type.
        curl_like = httpx.post(f"{url}/classify", content=b"[[5.9, 3.0, 5.1, 1.8]]",
                               headers={"content-type": "application/x-www-form-urlencoded"})
        assert curl_like.json() == [2]
        assert httpx.get(f"{url}/readyz").status_code == 200


def test_custom_route(iris_clf: svm.SVC) -> None:
    runner = bentoml.sklearn.get("iris_clf:latest").to_runner()
    svc = bentoml.Service("iris_classifier", runners=[runner])

    @svc.api(
        input=NumpyNdarray(),
        output=NumpyNdarray(),
        route="/v2/models/my_model/versions/v0/infer",
    )
    def predict(input_array: np.ndarray) -> np.ndarray:
        return runner.predict.run(input_array)

    with serve(svc) as url:
        response = httpx.post(f"{url}/v2/models/my_model/versions/v0/infer", json=SAMPLE)
        assert response.json() == [2, 0]
        assert httpx.post(f"{url}/predict", json=SAMPLE).status_code == 404
        paths = httpx.get(f"{url}/docs.json").json()["paths"]
        assert "/v2/models/my_model/versions/v0/infer" in paths


@pytest.mark.filterwarnings("ignore:.*align should be passed")
def test_validated_numpy_ndarray(iris_clf: svm.SVC) -> None:
    runner = bentoml.sklearn.get("iris_clf:latest").to_runner()
    svc = bentoml.Service("iris_classifier", runners=[runner])

    # Create API function with pre- and post- processing logic
    @svc.api(
        input=NumpyNdarray(schema=np.dtype(int, 4), validate=True),
        output=NumpyNdarray(schema=np.dtype(int), validate=True),
    )
    def predict(input_array: np.ndarray) -> np.ndarray:
        # The seed writes `await runner.run(...)` in a sync function; this is the runnable form.
        result = runner.predict.run(input_array)
        return result

    with serve(svc) as url:
        ints = httpx.post(f"{url}/predict", json=[[6, 3, 5, 2]])
        assert ints.status_code == 200 and ints.json() == iris_clf.predict([[6, 3, 5, 2]]).tolist()
        floats = httpx.post(f"{url}/predict", json=SAMPLE)
        assert floats.status_code == 400
        assert floats.json()["error"] == "expected an array of int64, got float64"


def test_multipart_json_and_array(iris_clf: svm.SVC) -> None:
    runner = bentoml.sklearn.get("iris_clf:latest").to_runner()
    svc = bentoml.Service("iris_classifier", runners=[runner])

    class FooModel(BaseModel):
        field1: int
        field2: float
        field3: str

    # The seed's `NumpyNdarray.from_sample(np.ndarray(...))`, with a real sample.
    my_np_input = NumpyNdarray.from_sample(np.array([[5.9, 3.0, 5.1, 1.8]]))
    assert my_np_input.shape == (1, 4)

    @svc.api(
        input=Multipart(
            arr=NumpyNdarray(schema=np.dtype("int64"), validate=True),
            json=Json(pydantic_model=FooModel),
        ),
        output=NumpyNdarray(schema=np.dtype(int), validate=True),
    )
    def predict(arr: np.ndarray, json: t.Dict[str, t.Any]) -> np.ndarray:  # noqa: UP006
        assert isinstance(json, FooModel)
        return runner.predict.run(arr) * json.field1

    foo = {"field1": 10, "field2": 0.5, "field3": "x"}
    with serve(svc) as url:
        form = httpx.post(f"{url}/predict", files={
            "arr": (None, "[[6, 3, 5, 2]]", "application/json"),
            "json": (None, json.dumps(foo), "application/json"),
        })
        assert form.status_code == 200, form.text
        expected = (iris_clf.predict([[6, 3, 5, 2]]) * 10).tolist()
        assert form.json() == expected
        as_json = httpx.post(f"{url}/predict", json={"arr": [[6, 3, 5, 2]], "json": foo})
        assert as_json.json() == expected
        invalid = httpx.post(f"{url}/predict", json={"arr": [[6, 3, 5, 2]],
                                                     "json": {**foo, "field1": "ten"}})
        assert invalid.status_code == 400
        assert invalid.json()["detail"][0]["loc"] == ["json", "field1"]


def test_async_api_calls_two_runners_at_once(iris_clf: svm.SVC) -> None:
    iris = datasets.load_iris()
    first = bentoml.models.get("iris_clf:latest")
    second_clf = LogisticRegression(max_iter=500).fit(iris.data, iris.target)
    second = bentoml.sklearn.save_model("iris_clf", second_clf)

    # Load two runners for two different versions of the ScikitLearn
    # Iris Classifier models we saved before
    runner1 = bentoml.sklearn.get(f"iris_clf:{first.tag.version}").to_runner(name="iris_clf_1")
    runner2 = bentoml.sklearn.get(f"iris_clf:{second.tag.version}").to_runner(name="iris_clf_2")
    svc = bentoml.Service("iris_classifier", runners=[runner1, runner2])

    def combine_results(results: list[np.ndarray]) -> np.ndarray:
        return np.stack(results, axis=1)

    @svc.api(input=NumpyNdarray(), output=NumpyNdarray())
    async def predict(input_array: np.ndarray) -> np.ndarray:
        # Invoke both model runners simultaneously
        results = await asyncio.gather(
            runner1.predict.async_run(input_array),
            runner2.predict.async_run(input_array),
        )
        return combine_results(results)

    with serve(svc) as url:
        response = httpx.post(f"{url}/predict", json=SAMPLE)
        assert response.status_code == 200
        expected = np.stack([iris_clf.predict(SAMPLE), second_clf.predict(SAMPLE)], axis=1)
        assert response.json() == expected.tolist()


class SlowRunnable(bentoml.Runnable):
    """Takes 0.4 s per call, so two calls in a row take 0.8 s and two at once 0.4 s."""

    @bentoml.Runnable.method
    def predict(self, x: np.ndarray) -> np.ndarray:
        time.sleep(0.4)
        return x


def test_async_gather_really_runs_runners_concurrently() -> None:
    runner1 = bentoml.Runner(SlowRunnable, name="slow_1")
    runner2 = bentoml.Runner(SlowRunnable, name="slow_2")
    svc = bentoml.Service("slow", runners=[runner1, runner2])

    @svc.api(input=NumpyNdarray(), output=NumpyNdarray())
    async def both(x: np.ndarray) -> np.ndarray:
        a, b = await asyncio.gather(runner1.predict.async_run(x), runner2.predict.async_run(x))
        return a + b

    with serve(svc) as url:
        started = time.perf_counter()
        response = httpx.post(f"{url}/both", json=[1, 2])
        elapsed = time.perf_counter() - started
    assert response.json() == [2, 4]
    assert elapsed < 0.75, f"the two runners ran one after the other ({elapsed:.2f} s)"


def test_runners_with_one_name_are_refused(iris_clf: svm.SVC) -> None:
    runner1 = bentoml.sklearn.get("iris_clf:latest").to_runner()
    runner2 = bentoml.sklearn.get("iris_clf:latest").to_runner()
    with pytest.raises(bentoml.exceptions.InvalidArgument, match=r"to_runner\(name=\.\.\.\)"):
        bentoml.Service("iris_classifier", runners=[runner1, runner2])
