"""scikit-learn estimators and pipelines, stored with joblib.

    >>> clf = LogisticRegression().fit(X, y)
    >>> dosirak.sklearn.save_model("iris_clf", clf)
    >>> dosirak.sklearn.load_model("iris_clf:latest").predict(X)
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from dosirak.faces import module_getattr
from dosirak.frameworks import (
    calls_of,
    get_model,
    learn_input,
    loads_model,
    methods_present,
    versions_of,
)
from dosirak.input_spec import input_spec_of
from dosirak.models import Model, require, save
from dosirak.tag import Tag

MODULE_NAME = "dosirak.sklearn"
MODEL_FILE = "saved_model.joblib"
# Every one of these maps rows to rows, so batching along axis 0 is always correct.
BATCHABLE_METHODS = (
    "predict", "predict_proba", "predict_log_proba", "decision_function", "transform",
    "score_samples",
)


def save_model(
    name: str,
    model: Any,
    *,
    labels: dict[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
    custom_objects: dict[str, Any] | None = None,
    signatures: dict[str, Any] | None = None,
    input_sample: Any = None,
    external_modules: list[ModuleType] | None = None,
) -> Model:
    """Save a fitted scikit-learn estimator (or pipeline) into the model store.

    What the estimator knows of its input (``n_features_in_``, ``feature_names_in_``, whether
    it takes NaN) goes into ``model.yaml``, so that calls with rows of another width, or with
    NaN or infinities it would refuse, get a 400 before they reach it; ``input_sample`` (a few
    rows) stands in for an estimator that does not say.
    """
    joblib = require("joblib", "sklearn")
    require("sklearn", "sklearn")
    defaults = methods_present(model, BATCHABLE_METHODS, {"batchable": True, "batch_dim": 0})
    learned = learn_input(lambda: {**input_spec_of(model), **_nan_policy(model)}, input_sample,
                       calls_of(model), signatures, defaults or {"predict": {}})

    def write(directory: Path) -> dict[str, Any]:
        joblib.dump(model, directory / MODEL_FILE)
        return learned

    return save(
        name, module=MODULE_NAME, write=write, default_signatures=defaults or {"predict": {}},
        labels=labels, metadata=metadata, custom_objects=custom_objects, signatures=signatures,
        framework_versions=versions_of("scikit-learn", "joblib"),
        external_modules=external_modules,
    )


def _nan_policy(estimator: Any) -> dict[str, bool]:
    """scikit-learn's own word on NaN (its ``allow_nan`` tag); an estimator that refuses NaN
    validates its input as all finite, so it refuses infinities too."""
    try:
        try:
            from sklearn.utils import get_tags
        except ImportError:  # scikit-learn < 1.6
            allow_nan = estimator._get_tags().get("allow_nan")
        else:
            allow_nan = get_tags(estimator).input_tags.allow_nan
    except Exception:  # not a scikit-learn estimator: the probe at save decides
        return {}
    if allow_nan is False:
        return {"allow_nan": False, "allow_inf": False}
    return {"allow_nan": True} if allow_nan else {}


@loads_model
def load_model(tag: Tag | str | Model) -> Any:
    """Load the estimator back."""
    model = get_model(MODULE_NAME, tag)
    joblib = require("joblib", "sklearn")
    return joblib.load(model.path / MODEL_FILE)


def get(tag: Tag | str | Model) -> Model:
    """The stored model, checked to be a scikit-learn one."""
    return get_model(MODULE_NAME, tag)


# SklearnModelArtifact at BentoML 0.x's import path, made by dosirak.legacy (dosirak.faces)
__getattr__ = module_getattr(__name__)
