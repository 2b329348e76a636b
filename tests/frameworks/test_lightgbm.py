"""The LightGBM adapter: Booster and estimators from the text model file, without pickle."""

from __future__ import annotations

import warnings

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

import dosirak
from dosirak.exceptions import InvalidArgument

PARAMS = {"n_estimators": 6, "num_leaves": 4, "min_child_samples": 3, "verbose": -1}


def data(n: int = 90) -> tuple[pd.DataFrame, np.ndarray]:
    x = np.random.default_rng(0).normal(size=(n, 3))
    frame = pd.DataFrame(x, columns=["age", "income", "visits"])
    return frame, x[:, 0] + x[:, 1] ** 2


def test_booster_and_estimators_predict_the_same_in_a_fresh_process(fresh_process):
    frame, target = data()
    species = np.array(["setosa", "versicolor", "virginica"])[np.digitize(target, [0.0, 1.0])]
    booster = lgb.train({"num_leaves": 4, "verbose": -1}, lgb.Dataset(frame.to_numpy(), target),
                        num_boost_round=5)
    classifier = lgb.LGBMClassifier(**PARAMS).fit(frame, species)
    regressor = lgb.LGBMRegressor(**PARAMS, reg_alpha=0.5).fit(frame.to_numpy(), target)

    saved = dosirak.lightgbm.save_model("booster", booster)
    clf = dosirak.lightgbm.save_model("clf", classifier)
    dosirak.lightgbm.save_model("reg", regressor)

    assert saved.info.options == {"model_class": "Booster", "format": "txt", "input_spec": {
        "n_features": 3, "outputs": {"predict": {"dtype": "<f8", "shape": [-1]}}}}
    assert list(saved.info.signatures) == ["predict"]
    assert set(clf.info.signatures) == {"predict", "predict_proba"}
    assert not list(clf.path.glob("*.pkl"))  # nothing pickled
    x = frame.to_numpy()
    out = fresh_process.run("""
        import pandas as pd, dosirak
        from sklearn.utils.validation import check_is_fitted
        booster = dosirak.lightgbm.load_model("booster")
        classifier = dosirak.lightgbm.load_model("clf")
        regressor = dosirak.lightgbm.load_model("reg")
        check_is_fitted(classifier)
        frame = pd.DataFrame(inputs["x"], columns=["age", "income", "visits"])
        outputs["types"] = np.array([type(m).__name__ for m in (booster, classifier, regressor)])
        outputs["booster"] = booster.predict(inputs["x"])
        outputs["labels"] = classifier.predict(frame)
        outputs["proba"] = classifier.predict_proba(frame)
        outputs["classes"] = classifier.classes_
        outputs["features"] = classifier.feature_names_in_
        outputs["n_features"] = [classifier.n_features_in_, regressor.n_features_]
        outputs["reg"] = regressor.predict(inputs["x"])
        outputs["reg_alpha"] = regressor.get_params()["reg_alpha"]
    """, x=x)

    assert out["types"].tolist() == ["Booster", "LGBMClassifier", "LGBMRegressor"]
    np.testing.assert_allclose(out["booster"], booster.predict(x), rtol=1e-9)
    np.testing.assert_array_equal(out["labels"], classifier.predict(frame))
    np.testing.assert_allclose(out["proba"], classifier.predict_proba(frame), rtol=1e-9)
    np.testing.assert_array_equal(out["classes"], classifier.classes_)
    assert out["features"].tolist() == ["age", "income", "visits"]
    assert out["n_features"].tolist() == [3, 3]
    np.testing.assert_allclose(out["reg"], regressor.predict(x), rtol=1e-9)
    assert out["reg_alpha"] == 0.5


def test_binary_classifier_with_integer_labels_round_trips():
    frame, target = data(60)
    labels = (target > 0.5).astype(np.int64) * 7  # classes 0 and 7
    classifier = lgb.LGBMClassifier(**PARAMS).fit(frame.to_numpy(), labels)
    dosirak.lightgbm.save_model("clf", classifier)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a rebuilt estimator must not warn on predict
        loaded = dosirak.lightgbm.load_model("clf")
        predicted = loaded.predict(frame.to_numpy())

    assert loaded.classes_.dtype == np.int64
    np.testing.assert_array_equal(predicted, classifier.predict(frame.to_numpy()))
    np.testing.assert_allclose(loaded.predict_proba(frame.to_numpy()),
                               classifier.predict_proba(frame.to_numpy()))


def test_save_refuses_what_the_text_format_cannot_hold():
    frame, target = data(40)

    def squared_error(y_true, y_pred):
        return y_pred - y_true, np.ones_like(y_pred)

    custom = lgb.LGBMRegressor(**PARAMS, objective=squared_error).fit(frame.to_numpy(), target)
    with pytest.raises(InvalidArgument, match="picklable_model"):
        dosirak.lightgbm.save_model("custom", custom)
    with pytest.raises(InvalidArgument, match="not fitted"):
        dosirak.lightgbm.save_model("unfitted", lgb.LGBMRegressor())
    with pytest.raises(InvalidArgument, match="picklable_model"):
        dosirak.lightgbm.save_model("bad", object())
    dosirak.picklable_model.save_model("other", lambda v: v)
    with pytest.raises(InvalidArgument, match=r"saved with dosirak\.picklable_model"):
        dosirak.lightgbm.get("other")
    assert dosirak.models.list() == [dosirak.models.get("other")]  # no half-saved model


def test_importing_the_adapter_loads_no_framework_and_loading_without_lightgbm_names_the_extra(
        fresh_process):
    frame, target = data(40)
    dosirak.lightgbm.save_model("reg", lgb.LGBMRegressor(**PARAMS).fit(frame, target))

    assert fresh_process.heavy_modules_after("import dosirak, dosirak.lightgbm") == []
    error = fresh_process.error("import dosirak; dosirak.lightgbm.load_model('reg')",
                                blocked=["lightgbm"])
    assert error.startswith("MissingDependency: ")
    assert "pip install 'dosirak[lightgbm]'" in error
