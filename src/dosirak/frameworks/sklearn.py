"""scikit-learn estimators and pipelines, stored with joblib.

    >>> clf = LogisticRegression().fit(X, y)
    >>> dosirak.sklearn.save_model("iris_clf", clf)
    >>> dosirak.sklearn.load_model("iris_clf:latest").predict(X)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dosirak.frameworks import get_model, methods_present, versions_of
from dosirak.models import Model, Tag, require, save

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
) -> Model:
    """Save a fitted scikit-learn estimator (or pipeline) into the model store."""
    joblib = require("joblib", "sklearn")
    require("sklearn", "sklearn")

    def write(directory: Path) -> dict[str, Any]:
        joblib.dump(model, directory / MODEL_FILE)
        return {}

    defaults = methods_present(model, BATCHABLE_METHODS, {"batchable": True, "batch_dim": 0})
    return save(
        name, module=MODULE_NAME, write=write, default_signatures=defaults or {"predict": {}},
        labels=labels, metadata=metadata, custom_objects=custom_objects, signatures=signatures,
        framework_versions=versions_of("scikit-learn", "joblib"),
    )


def load_model(tag: Tag | str | Model) -> Any:
    """Load the estimator back."""
    model = get_model(MODULE_NAME, tag)
    joblib = require("joblib", "sklearn")
    return joblib.load(model.path / MODEL_FILE)


def get(tag: Tag | str | Model) -> Model:
    """The stored model, checked to be a scikit-learn one."""
    return get_model(MODULE_NAME, tag)
