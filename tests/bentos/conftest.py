"""Fixtures of the bento tests: the iris model saved in the test's store, and a project folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sklearn import datasets
from sklearn.linear_model import LogisticRegression

import dosirak

REPO = Path(__file__).resolve().parents[2]
IRIS_EXAMPLE = REPO / "examples" / "iris"


@pytest.fixture
def iris_model() -> dosirak.Model:
    """The seeds' iris classifier, saved as iris_clf in this test's model store."""
    iris = datasets.load_iris()
    clf = LogisticRegression(max_iter=1000, random_state=0).fit(iris.data, iris.target)
    return dosirak.sklearn.save_model("iris_clf", clf,
                                      signatures={"predict": {"batchable": True}})


@pytest.fixture
def iris_project(tmp_path: Path, iris_model: dosirak.Model) -> Path:
    """A copy of examples/iris (service and bentofile) that a test may edit."""
    project = tmp_path / "iris"
    shutil.copytree(IRIS_EXAMPLE, project,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return project
