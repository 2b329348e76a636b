"""A model's input, recorded at save time and checked before each call (issue 10, item 4).

A call whose rows do not fit the model was a 500 from deep inside scikit-learn; an empty batch
reached the model, which refuses zero rows. Both are checked in the calling process, so they
hold with the runner placed ``local`` and ``process``, over real HTTP.
"""

from __future__ import annotations

import io

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import dosirak
import dosirak.sklearn
from dosirak.exceptions import InvalidArgument
from dosirak.io import JSON, NumpyNdarray, PandasDataFrame
from live_server import serve


def iris_service(frame: bool) -> dosirak.Service:
    features, labels = load_iris(return_X_y=True, as_frame=frame)
    model = dosirak.sklearn.save_model("iris", LogisticRegression(max_iter=500).fit(features,
                                                                                    labels))
    runner = model.to_runner()
    svc = dosirak.Service("iris", runners=[runner])

    @svc.api(input=NumpyNdarray(), output=NumpyNdarray())
    def classify(rows: np.ndarray) -> np.ndarray:
        return runner.predict.run(rows)

    @svc.api(input=PandasDataFrame(), output=JSON())
    def probabilities(rows: pd.DataFrame) -> np.ndarray:
        return runner.predict_proba.run(rows)

    return svc


def test_save_model_records_what_the_estimator_knows() -> None:
    features, labels = load_iris(return_X_y=True, as_frame=True)
    info = dosirak.sklearn.save_model("iris", LogisticRegression(max_iter=500).fit(
        features, labels)).info
    spec = dosirak.models.get(f"iris:{info.version}").info.options["input_spec"]  # from the yaml
    assert spec["n_features"] == 4 and spec["feature_names"] == list(features.columns)
    assert spec["outputs"]["predict_proba"] == {"dtype": "<f8", "shape": [-1, 3]}


@pytest.mark.parametrize("placement", ["local", "process"])
def test_rows_of_the_wrong_width_are_400_naming_what_the_model_takes(placement: str) -> None:
    with serve(iris_service(frame=False), placement=placement) as url:
        assert httpx.post(f"{url}/classify", json=[[5.1, 3.5, 1.4, 0.2]]).json() == [0]
        for body in ([[1.0, 2.0, 3.0]], [1.0, 2.0, 3.0, 4.0], [[[1.0, 2.0, 3.0, 4.0]]]):
            response = httpx.post(f"{url}/classify", json=body)
            assert response.status_code == 400, response.text
            assert "the model takes rows of 4 features" in response.json()["error"]
            assert response.json()["detail"][0]["type"] == "shape_error"


@pytest.mark.parametrize("placement", ["local", "process"])
def test_an_empty_batch_is_answered_without_the_model(placement: str) -> None:
    with serve(iris_service(frame=False), placement=placement) as url:
        assert httpx.post(f"{url}/classify", json=[]).json() == []
        empty = httpx.post(f"{url}/classify", content=b"[]",
                           headers={"content-type": "application/json",
                                    "accept": "application/x-npy"})
        array = np.lib.format.read_array(io.BytesIO(empty.content))
        assert array.shape == (0,) and array.dtype == np.int64


def test_columns_are_checked_against_the_feature_names() -> None:
    with serve(iris_service(frame=True)) as url:
        names = list(load_iris(as_frame=True).data.columns)
        row = dict(zip(names, [5.1, 3.5, 1.4, 0.2], strict=True))
        assert len(httpx.post(f"{url}/probabilities", json=[row]).json()[0]) == 3
        renamed = {**{k: v for k, v in row.items() if k != names[0]}, "sepal": 5.1}
        response = httpx.post(f"{url}/probabilities", json=[renamed])
        assert response.status_code == 400 and names[0] in response.json()["error"]
        assert response.json()["detail"][0]["loc"] == ["body", names[0]]
        assert httpx.post(f"{url}/probabilities", json=[]).json() == []


class Doubler:
    """An estimator-like object that does not state its input width."""

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(rows).sum(axis=1) * 2


def test_input_sample_stands_in_for_an_estimator_that_does_not_say() -> None:
    model = dosirak.sklearn.save_model("doubler", Doubler(), input_sample=np.ones((2, 3)))
    assert model.info.options["input_spec"] == {
        "n_features": 3, "outputs": {"predict": {"dtype": "<f8", "shape": [-1]}}}
    with pytest.raises(InvalidArgument, match="2-D array"):
        dosirak.sklearn.save_model("doubler", Doubler(), input_sample=[1, 2, 3])
