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
from sklearn.ensemble import HistGradientBoostingClassifier
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


def npy(array: np.ndarray) -> dict[str, object]:
    """The keyword arguments of an httpx.post sending ``array`` as a .npy body."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return {"content": buffer.getvalue(), "headers": {"content-type": "application/x-npy"}}


def test_the_nan_policy_is_scikit_learns_own_tag() -> None:
    features, labels = load_iris(return_X_y=True)
    refuses = dosirak.sklearn.save_model("iris", LogisticRegression(max_iter=500).fit(
        features, labels)).info.options["input_spec"]
    assert refuses["allow_nan"] is False and refuses["allow_inf"] is False
    takes = dosirak.sklearn.save_model("hgb", HistGradientBoostingClassifier(max_iter=3).fit(
        features, labels)).info.options["input_spec"]
    assert takes.get("allow_nan", True) and takes.get("allow_inf", True)


@pytest.mark.parametrize("placement", ["local", "process"])
def test_nan_and_infinity_are_400_where_the_estimator_refuses_them(placement: str) -> None:
    with serve(iris_service(frame=False), placement=placement) as url:
        for bad, place in ((np.nan, [0, 2]), (np.inf, [1, 3]), (-np.inf, [0, 0])):
            rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]])
            rows[tuple(place)] = bad
            response = httpx.post(f"{url}/classify", **npy(rows))
            assert response.status_code == 400, response.text
            assert "the model cannot take NaN or infinity" in response.json()["error"]
            assert response.json()["detail"][0]["loc"] == ["body", *place]
        assert httpx.post(f"{url}/classify", **npy(np.array([[5.1, 3.5, 1.4, 0.2]]))).json() \
            == [0]
        names = list(load_iris(as_frame=True).data.columns)
    with serve(iris_service(frame=True), placement=placement) as url:
        rows = [dict(zip(names, [5.1, 3.5, 1.4, 0.2], strict=True)) for _ in range(3)]
        rows[2][names[1]] = None  # a JSON null is NaN in a float column
        response = httpx.post(f"{url}/probabilities", json=rows)
        assert response.status_code == 400, response.text
        assert response.json()["detail"][0]["loc"] == ["body", 2, names[1]]


def test_an_estimator_that_takes_nan_is_given_it() -> None:
    features, labels = load_iris(return_X_y=True)
    model = dosirak.sklearn.save_model("hgb", HistGradientBoostingClassifier(max_iter=3).fit(
        features, labels))
    runner = model.to_runner()
    runner.init_local()
    rows = np.array([[np.nan, 3.5, np.inf, 0.2]])
    assert runner.predict.run(rows).shape == (1,)


@pytest.mark.parametrize("placement", ["local", "process"])
def test_an_empty_batch_without_a_recorded_answer_form_is_400(placement: str) -> None:
    model = dosirak.sklearn.save_model("doubler", Doubler())  # states no width: nothing probed
    assert "input_spec" not in model.info.options
    runner = model.to_runner()
    svc = dosirak.Service("doubler", runners=[runner])

    @svc.api(input=NumpyNdarray(), output=NumpyNdarray())
    def double(rows: np.ndarray) -> np.ndarray:
        return runner.predict.run(rows)

    with serve(svc, placement=placement) as url:
        assert httpx.post(f"{url}/double", json=[[1.0, 2.0]]).json() == [6.0]
        for request in ({"json": []}, npy(np.zeros((0, 2)))):
            response = httpx.post(f"{url}/double", **request)
            assert response.status_code == 400, response.text
            assert response.json()["error"].startswith("empty batch: send at least one row")
