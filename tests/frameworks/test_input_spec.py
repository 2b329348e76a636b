"""Every adapter records what it can learn of its model's input, and calls that do not fit are a
400 in the calling process (issue 10, item 4), with the runner placed ``local`` and ``process``.

Each case is a real, small model saved by its adapter and served over real HTTP; the calls it
could not take were 500s from inside the framework before their spec was recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest

import dosirak
from dosirak.exceptions import BadInput, InvalidArgument
from dosirak.io import NumpyNdarray
from live_server import serve
from test_input_spec import npy

ROWS = np.random.default_rng(0).normal(size=(40, 4))
TARGET = ROWS @ np.array([1.0, -2.0, 0.5, 0.0])


@dataclass
class Case:
    save: Callable[[], dosirak.Model]
    method: str
    empty: list[Any] | None  # the answer to an empty batch (None: a 400)
    takes_nan: bool
    takes_inf: bool
    dtype: str = "float64"  # the dtype the model needs (exactly, for onnx and torch)
    pick: Callable[[Any], Any] = lambda answer: answer


def xgboost_booster() -> Any:
    import xgboost as xgb

    return xgb.train({"max_depth": 2}, xgb.DMatrix(ROWS, label=TARGET), num_boost_round=5)


def save_xgboost() -> dosirak.Model:
    return dosirak.xgboost.save_model("xgb", xgboost_booster())


def save_lightgbm() -> dosirak.Model:
    import lightgbm as lgb

    regressor = lgb.LGBMRegressor(n_estimators=5, min_child_samples=5, verbose=-1)
    return dosirak.lightgbm.save_model("lgb", regressor.fit(ROWS, TARGET))


def save_onnx() -> dosirak.Model:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rows = ROWS.astype(np.float32)
    classifier = LogisticRegression().fit(rows, TARGET > 0)
    proto = to_onnx(classifier, rows[:1], options={"zipmap": False}, target_opset=17)
    return dosirak.onnx.save_model("onnx", proto)


def save_keras() -> dosirak.Model:
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])
    return dosirak.keras.save_model("keras", model)


def save_pytorch() -> dosirak.Model:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    return dosirak.pytorch.save_model("torch", net.eval(),
                                      input_sample=ROWS[:2].astype(np.float32))


CASES = {
    "xgboost": Case(save_xgboost, "predict", [], takes_nan=True, takes_inf=False),
    "lightgbm": Case(save_lightgbm, "predict", [], takes_nan=True, takes_inf=True),
    # label and probabilities: two outputs, so the form of an answer is not recorded
    "onnx": Case(save_onnx, "run", None, takes_nan=True, takes_inf=True, dtype="float32",
                 pick=lambda answer: answer[1]),
    "keras": Case(save_keras, "predict", [], takes_nan=True, takes_inf=True),
    "pytorch": Case(save_pytorch, "__call__", [], takes_nan=True, takes_inf=True,
                    dtype="float32"),
}


def service_of(case: Case) -> dosirak.Service:
    runner = case.save().to_runner()
    svc = dosirak.Service("checked", runners=[runner])

    @svc.api(input=NumpyNdarray(), output=NumpyNdarray())
    def call(rows: np.ndarray) -> np.ndarray:
        return case.pick(runner.methods[case.method].run(rows))

    return svc


@pytest.mark.parametrize("placement", ["local", "process"])
@pytest.mark.parametrize("framework", sorted(CASES))
def test_calls_that_do_not_fit_the_model_are_400(framework: str, placement: str) -> None:
    case = CASES[framework]
    rows = ROWS[:3].astype(case.dtype)
    with serve(service_of(case), placement=placement) as url:
        assert len(httpx.post(f"{url}/call", **npy(rows)).json()) == 3

        narrow = httpx.post(f"{url}/call", **npy(rows[:, :3]))
        assert narrow.status_code == 400, narrow.text
        assert "the model takes rows of 4 features" in narrow.json()["error"]

        empty = httpx.post(f"{url}/call", **npy(rows[:0]))
        if case.empty is None:
            assert empty.status_code == 400, empty.text
            assert empty.json()["error"].startswith("empty batch: send at least one row")
        else:
            assert empty.status_code == 200 and empty.json() == case.empty, empty.text

        for value, taken in ((np.nan, case.takes_nan), (np.inf, case.takes_inf)):
            holed = rows.copy()
            holed[1, 2] = value
            answer = httpx.post(f"{url}/call", **npy(holed))
            assert answer.status_code == (200 if taken else 400), answer.text
            if not taken:
                assert answer.json()["detail"][0]["loc"] == ["body", 1, 2]

        if case.dtype != "float64":  # ONNX Runtime and torch convert nothing
            wrong = httpx.post(f"{url}/call", **npy(ROWS[:3]))
            assert wrong.status_code == 400, wrong.text
            assert f"the model takes {case.dtype} values" in wrong.json()["error"]


def test_a_model_that_says_nothing_is_saved_without_a_spec() -> None:
    import torch

    net = torch.nn.Linear(4, 2)
    assert "input_spec" not in dosirak.pytorch.save_model("plain", net).info.options
    # in training mode the module is not called (its batch norms would learn from the probe)
    spec = dosirak.pytorch.save_model("training", net.train(), input_sample=ROWS[:1]).info.options
    assert spec["input_spec"] == {"n_features": 4, "dtype": "<f8"}


def test_a_sample_gives_the_shape_of_rows_of_any_rank() -> None:

    model = dosirak.picklable_model.save_model(
        "channels", lambda images: images.sum(axis=(1, 2)), input_sample=np.ones((2, 3, 5)),
        signatures={"__call__": {"batchable": True, "batch_dim": 0}})
    assert model.info.options["input_spec"]["shape"] == [-1, 3, 5]
    runner = model.to_runner()
    runner.init_local()
    assert runner.run(np.ones((2, 3, 5))).tolist() == [15.0, 15.0]
    with pytest.raises(BadInput, match=r"3-D input of shape \(rows, 3, 5\)"):
        runner.run(np.ones((2, 5, 3)))
    assert runner.run(np.ones((0, 3, 5))).shape == (0,)  # the recorded answer form
    with pytest.raises(InvalidArgument, match="input_sample has rows of shape"):
        dosirak.xgboost.save_model("xgb", xgboost_booster(), input_sample=ROWS[:, :3])
