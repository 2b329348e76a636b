"""LightGBM boosters and scikit-learn style estimators, stored as LightGBM's text model (no pickle).

    >>> dosirak.lightgbm.save_model("churn", lgb.LGBMClassifier().fit(X, y))
    >>> dosirak.lightgbm.load_model("churn:latest").predict_proba(X)
    >>> dosirak.lightgbm.load_model("ranker:latest").predict(X)        # a saved lgb.Booster

The trees are LightGBM's own ``.txt`` model file. An estimator (``LGBMClassifier``,
``LGBMRegressor``, ``LGBMRanker``) is stored as that file plus a small JSON file with its
parameters and fitted state (classes, feature count, objective), and is rebuilt around the loaded
booster: nothing is unpickled. Estimators with Python callables as parameters (a custom objective
or metric) cannot be stored this way: save those with ``dosirak.picklable_model``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

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

MODULE_NAME = "dosirak.lightgbm"
MODEL_FILE = "saved_model.txt"
ESTIMATOR_FILE = "estimator.json"
BATCHABLE_METHODS = ("predict", "predict_proba")
ESTIMATOR_CLASSES = ("LGBMClassifier", "LGBMRegressor", "LGBMRanker", "LGBMModel")


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
    """Save an ``lgb.Booster`` or a fitted LightGBM estimator into the model store.

    The options record ``model_class`` (the class rebuilt at load), ``format`` and
    ``input_spec``: the booster's feature count (and names, when it was trained on named
    columns), checked before each call; NaN is LightGBM's missing value and is let through.
    ``input_sample`` (a few rows) adds what the booster does not say.
    """
    lgb = require("lightgbm", "lightgbm")
    model_class = type(model).__name__
    if type(model) is lgb.Booster:
        booster, state = model, None
    elif model_class in ESTIMATOR_CLASSES and getattr(lgb, model_class) is type(model):
        booster, state = _fitted_booster(model), _estimator_state(model)
    else:
        raise InvalidArgument(
            f"dosirak.lightgbm saves lightgbm.Booster and lightgbm's own estimator classes, got "
            f"{type(model).__module__}.{model_class}; save a subclass or a wrapper with "
            "dosirak.picklable_model"
        )

    defaults = methods_present(model, BATCHABLE_METHODS, {"batchable": True, "batch_dim": 0})
    learned = learn_input(lambda: _input_of(booster), input_sample, calls_of(model), signatures,
                       defaults)

    def write(directory: Path) -> dict[str, Any]:
        booster.save_model(str(directory / MODEL_FILE))
        if state is not None:
            (directory / ESTIMATOR_FILE).write_text(state)
        return {"model_class": model_class, "format": "txt", **learned}

    return save(
        name, module=MODULE_NAME, write=write, default_signatures=defaults,
        labels=labels, metadata=metadata, custom_objects=custom_objects, signatures=signatures,
        framework_versions=versions_of("lightgbm", "scikit-learn"),
    )


@loads_model
def load_model(tag: Tag | str | Model) -> Any:
    """Load the booster, or rebuild the estimator around it."""
    model = get_model(MODULE_NAME, tag)
    lgb = require("lightgbm", "lightgbm")
    booster = lgb.Booster(model_file=str(model.path / MODEL_FILE))
    model_class = model.info.options.get("model_class", "Booster")
    if model_class == "Booster":
        return booster
    if model_class not in ESTIMATOR_CLASSES:
        raise InvalidArgument(f"model {model.tag} is a lightgbm {model_class}, which this "
                              "adapter cannot rebuild; load it with a dosirak version that can")
    require("sklearn", "lightgbm")  # LightGBM's estimators need scikit-learn
    state = json.loads((model.path / ESTIMATOR_FILE).read_text())
    return _rebuild(getattr(lgb, model_class), booster, state)


def get(tag: Tag | str | Model) -> Model:
    """The stored model, checked to be a LightGBM one."""
    return get_model(MODULE_NAME, tag)


def _input_of(booster: Any) -> dict[str, Any]:
    """The booster's width, and its feature names unless they are LightGBM's made-up ones."""
    width = booster.num_feature()
    names = booster.feature_name()
    made_up = names == [f"Column_{index}" for index in range(width)]
    return input_spec_from_shape((None, width), None, None if made_up else names)


def _fitted_booster(estimator: Any) -> Any:
    booster = getattr(estimator, "_Booster", None)
    if booster is None:
        raise InvalidArgument(f"this {type(estimator).__name__} is not fitted: call fit() "
                              "before saving it")
    return booster


def _json_value(value: Any) -> Any:
    """numpy scalars become Python numbers; anything else that JSON cannot hold is refused."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} cannot be stored as JSON")


def _estimator_state(estimator: Any) -> str:
    """The estimator's parameters and the fitted attributes that are not in the booster file."""
    classes = getattr(estimator, "_classes", None)
    state = {
        "params": estimator.get_params(deep=False),
        "objective": estimator._objective,
        "n_features_in": estimator._n_features_in,
        "fitted_with_feature_names": estimator._fitted_with_feature_names,
        "classes": None if classes is None else np.asarray(classes).tolist(),
        "classes_dtype": None if classes is None else np.asarray(classes).dtype.str,
    }
    try:
        return json.dumps(state, default=_json_value)
    except TypeError as error:
        raise InvalidArgument(
            f"this {type(estimator).__name__} holds a value LightGBM's text format cannot keep "
            f"({error}), such as a custom objective function; save it with "
            "dosirak.picklable_model instead"
        ) from error


def _rebuild(cls: type, booster: Any, state: dict[str, Any]) -> Any:
    """An estimator as ``fit`` leaves it, around an already trained booster.

    The attribute names are LightGBM's (4.x); the round-trip tests check them on every release.
    """
    from sklearn.preprocessing import LabelEncoder

    estimator = cls(**state["params"])
    estimator._Booster = booster
    estimator._objective = state["objective"]
    estimator._n_features = booster.num_feature()
    estimator._n_features_in = state["n_features_in"]
    estimator._fitted_with_feature_names = state["fitted_with_feature_names"]
    estimator._best_iteration = booster.best_iteration
    if state["classes"] is not None:
        classes = np.asarray(state["classes"], dtype=np.dtype(state["classes_dtype"]))
        estimator._le = LabelEncoder().fit(classes)
        estimator._classes = estimator._le.classes_
        estimator._n_classes = len(classes)
        estimator._class_map = dict(zip(classes, range(len(classes)), strict=True))
    estimator.fitted_ = True
    return estimator


# LightGBMModelArtifact at BentoML 0.x's import path, made by dosirak.legacy (dosirak.faces)
__getattr__ = module_getattr(__name__)
