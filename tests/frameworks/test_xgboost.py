"""The XGBoost adapter: Booster and scikit-learn estimators, in XGBoost's UBJSON, no pickle."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

import dosirak
from dosirak.exceptions import InvalidArgument


def data(n: int = 80) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    return x, x[:, 0] + 0.5 * x[:, 1] ** 2


def test_booster_and_estimators_predict_the_same_in_a_fresh_process(fresh_process):
    x, target = data()
    labels = (target > 0.5).astype(int) + (target > 1.5).astype(int)  # three classes
    booster = xgb.train({"max_depth": 2, "eta": 0.3}, xgb.DMatrix(x, label=target),
                        num_boost_round=8)
    classifier = xgb.XGBClassifier(n_estimators=8, max_depth=2).fit(x, labels)
    regressor = xgb.XGBRegressor(n_estimators=8, max_depth=2).fit(x, target)

    saved = dosirak.xgboost.save_model("booster", booster)
    dosirak.xgboost.save_model("clf", classifier)
    dosirak.xgboost.save_model("reg", regressor)

    assert saved.info.options == {  # NaN is xgboost's missing value; a DMatrix refuses inf
        "model_class": "Booster", "format": "ubj", "input_spec": {
            "n_features": 4, "allow_inf": False,
            "outputs": {"predict": {"dtype": "<f4", "shape": [-1]}}}}
    assert list(saved.info.signatures) == ["predict"]
    assert saved.info.signatures["predict"].batchable
    assert set(dosirak.xgboost.get("clf").info.signatures) == {"predict", "predict_proba", "apply"}
    assert (saved.path / "saved_model.ubj").is_file()
    out = fresh_process.run("""
        import xgboost as xgb, dosirak
        booster = dosirak.xgboost.load_model("booster")
        classifier = dosirak.xgboost.load_model("clf")
        outputs["types"] = np.array([type(booster).__name__, type(classifier).__name__,
                                     type(dosirak.xgboost.load_model("reg")).__name__])
        outputs["booster"] = booster.predict(xgb.DMatrix(inputs["x"]))
        outputs["runnable"] = dosirak.xgboost.runnable_method(booster, "predict")(inputs["x"])
        outputs["labels"] = classifier.predict(inputs["x"])
        outputs["proba"] = classifier.predict_proba(inputs["x"])
        outputs["classes"] = classifier.classes_
        outputs["reg"] = dosirak.xgboost.load_model("reg").predict(inputs["x"])
    """, x=x)

    assert out["types"].tolist() == ["Booster", "XGBClassifier", "XGBRegressor"]
    np.testing.assert_allclose(out["booster"], booster.predict(xgb.DMatrix(x)), rtol=1e-6)
    np.testing.assert_allclose(out["runnable"], booster.predict(xgb.DMatrix(x)), rtol=1e-6)
    np.testing.assert_array_equal(out["labels"], classifier.predict(x))
    np.testing.assert_allclose(out["proba"], classifier.predict_proba(x), rtol=1e-6)
    np.testing.assert_array_equal(out["classes"], [0, 1, 2])
    np.testing.assert_allclose(out["reg"], regressor.predict(x), rtol=1e-6)


def test_runner_feeds_a_booster_plain_arrays():
    x, target = data(40)
    booster = xgb.train({"max_depth": 2}, xgb.DMatrix(x, label=target), num_boost_round=3)
    runner = dosirak.xgboost.save_model("booster", booster).to_runner()
    runner.init_local()

    np.testing.assert_allclose(runner.predict.run(x), booster.predict(xgb.DMatrix(x)))


def test_save_and_get_refuse_what_is_not_an_xgboost_model():
    class Tuned(xgb.XGBRegressor):  # a subclass would come back as its base class: refused
        pass

    x, target = data(20)
    with pytest.raises(InvalidArgument, match="picklable_model"):
        dosirak.xgboost.save_model("tuned", Tuned(n_estimators=2).fit(x, target))
    with pytest.raises(InvalidArgument, match="picklable_model"):
        dosirak.xgboost.save_model("bad", [1, 2, 3])
    dosirak.picklable_model.save_model("other", lambda v: v)
    with pytest.raises(InvalidArgument, match=r"saved with dosirak\.picklable_model"):
        dosirak.xgboost.get("other")


def test_importing_the_adapter_loads_no_framework_and_loading_without_xgboost_names_the_extra(
        fresh_process):
    x, target = data(20)
    dosirak.xgboost.save_model("reg", xgb.XGBRegressor(n_estimators=2).fit(x, target))

    assert fresh_process.heavy_modules_after("import dosirak, dosirak.xgboost") == []
    error = fresh_process.error("import dosirak; dosirak.xgboost.load_model('reg')",
                                blocked=["xgboost"])
    assert error.startswith("MissingDependency: ")
    assert "pip install 'dosirak[xgboost]'" in error
