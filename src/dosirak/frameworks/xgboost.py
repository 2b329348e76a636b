"""XGBoost boosters and scikit-learn style estimators, stored in XGBoost's own UBJSON format.

    >>> dosirak.xgboost.save_model("churn", xgb.XGBClassifier().fit(X, y))
    >>> dosirak.xgboost.load_model("churn:latest").predict_proba(X)
    >>> booster = dosirak.xgboost.load_model("ranker:latest")      # a saved xgb.Booster
    >>> booster.predict(xgb.DMatrix(X))

No pickle: the model file is XGBoost's portable UBJSON (``save_model``/``load_model``), readable by
newer XGBoost releases. Estimators come back with their trees, classes and objective; training
hyper-parameters that XGBoost does not store in the file (such as ``n_estimators``) are not
restored.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dosirak.exceptions import InvalidArgument
from dosirak.faces import module_getattr
from dosirak.frameworks import (
    calls_of,
    get_model,
    learn_input,
    loads_model,
    methods_present,
    versions_of,
)
from dosirak.input_spec import input_spec_from_shape
from dosirak.models import Model, require, save
from dosirak.tag import Tag

MODULE_NAME = "dosirak.xgboost"
MODEL_FILE = "saved_model.ubj"
BATCHABLE_METHODS = ("predict", "predict_proba", "apply")


def save_model(
    name: str,
    model: Any,
    *,
    labels: dict[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
    custom_objects: dict[str, Any] | None = None,
    signatures: dict[str, Any] | None = None,
    input_sample: Any = None,
) -> Model:
    """Save an ``xgb.Booster`` or a fitted ``XGBClassifier``/``XGBRegressor``/``XGBRanker``...

    The options record ``model_class`` (the class rebuilt at load), ``format`` and
    ``input_spec``: the booster's feature count and names, checked before each call (a 400 for
    rows of another width); NaN is XGBoost's missing value and is let through.
    ``input_sample`` (a few rows) adds what the booster does not say (a DataFrame's columns).
    """
    xgb = require("xgboost", "xgboost")
    model_class = type(model).__name__
    if getattr(xgb, model_class, None) is not type(model) or not isinstance(
            model, (xgb.Booster, xgb.XGBModel)):
        raise InvalidArgument(
            f"dosirak.xgboost saves xgboost.Booster and xgboost's own estimator classes, got "
            f"{type(model).__module__}.{model_class}; save a subclass or a wrapper with "
            "dosirak.picklable_model"
        )

    defaults = methods_present(model, BATCHABLE_METHODS, {"batchable": True, "batch_dim": 0})
    learned = learn_input(lambda: _input_of(model, xgb), input_sample,
                          calls_of(model, runnable_method), signatures, defaults)

    def write(directory: Path) -> dict[str, Any]:
        model.save_model(directory / MODEL_FILE)
        return {"model_class": model_class, "format": "ubj", **learned}

    return save(
        name, module=MODULE_NAME, write=write, default_signatures=defaults,
        labels=labels, metadata=metadata, custom_objects=custom_objects, signatures=signatures,
        framework_versions=versions_of("xgboost", "xgboost-cpu"),
    )


@loads_model
def load_model(tag: Tag | str | Model) -> Any:
    """Load the booster or estimator back, as the class it was saved as."""
    model = get_model(MODULE_NAME, tag)
    xgb = require("xgboost", "xgboost")
    model_class = model.info.options.get("model_class", "Booster")
    cls = getattr(xgb, model_class, None)
    if not isinstance(cls, type) or not issubclass(cls, (xgb.Booster, xgb.XGBModel)):
        raise InvalidArgument(f"model {model.tag} is an xgboost {model_class}, which this "
                              f"xgboost {xgb.__version__} does not have; install the version "
                              "it was saved with (see its context.framework_versions)")
    loaded = cls()
    loaded.load_model(model.path / MODEL_FILE)
    return loaded


def get(tag: Tag | str | Model) -> Model:
    """The stored model, checked to be an XGBoost one."""
    return get_model(MODULE_NAME, tag)


def _input_of(model: Any, xgb: Any) -> dict[str, Any]:
    """The booster's width and feature names (None unless it was trained on named columns)."""
    booster = model if isinstance(model, xgb.Booster) else model.get_booster()
    return input_spec_from_shape((None, booster.num_features()), None, booster.feature_names)


def runnable_method(loaded: Any, method_name: str) -> Callable[..., Any] | None:
    """The runner's call: a Booster's ``predict`` takes arrays and data frames, not only DMatrix."""
    xgb = require("xgboost", "xgboost")
    function = loaded if method_name == "__call__" else getattr(loaded, method_name, None)
    if not callable(function):
        return function  # the runner says which method is missing
    if not isinstance(loaded, xgb.Booster) or method_name != "predict":
        return function

    def predict(data: Any, **kwargs: Any) -> Any:
        if not isinstance(data, xgb.DMatrix):
            data = xgb.DMatrix(data)
        return function(data, **kwargs)

    return predict


# XgboostModelArtifact at BentoML 0.x's import path, made by dosirak.legacy (dosirak.faces)
__getattr__ = module_getattr(__name__)
