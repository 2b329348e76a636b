"""Fixtures for offline runs: the seed's iris service as a file, a generic config, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sklearn import datasets, svm

import dosirak

DOSIRAK = str(Path(sys.executable).parent / "dosirak")
IRIS = datasets.load_iris()
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]

SERVICE_CODE = """
    import numpy as np
    import dosirak
    from dosirak.io import NumpyNdarray

    iris_clf_runner = dosirak.sklearn.get("iris_clf:latest").to_runner()
    svc = dosirak.Service("iris_classifier", runners=[iris_clf_runner])

    @svc.api(input=NumpyNdarray(), output=NumpyNdarray())
    def classify(input_series: np.ndarray) -> np.ndarray:
        return iris_clf_runner.predict.run(input_series)
"""


@pytest.fixture
def iris_clf() -> svm.SVC:
    """The seeds' iris classifier, saved as ``iris_clf``."""
    clf = svm.SVC(gamma="scale").fit(IRIS.data, IRIS.target)
    dosirak.sklearn.save_model("iris_clf", clf)
    return clf


@pytest.fixture
def service_file(tmp_path: Path, iris_clf: svm.SVC) -> Path:
    """The seed's iris service (a file the user wrote), importable as ``iris_service:svc``."""
    path = tmp_path / "iris_service.py"
    path.write_text(textwrap.dedent(SERVICE_CODE))
    return path


@pytest.fixture
def generic_config(tmp_path: Path, iris_clf: svm.SVC) -> Path:
    """A generic service over the same model: JSON rows in, the envelope out."""
    path = tmp_path / "iris.yaml"
    path.write_text(textwrap.dedent("""
        service: iris_generic
        endpoints:
          - name: classify
            model: iris_clf:latest
            input: NumpyNdarray
            output: NumpyNdarray
          - name: one
            model: iris_clf:latest
            input: JSON
            output: JSON
            envelope: false
    """))
    return path


def iris_rows(count: int, seed: int = 0) -> np.ndarray:
    """``count`` iris-like rows (resampled, with noise, one decimal like the real data)."""
    rng = np.random.default_rng(seed)
    rows = IRIS.data[rng.integers(0, len(IRIS.data), count)]
    return np.round(rows + rng.normal(0, 0.05, rows.shape), 1)


def dosirak_cli(*args: str, cwd: Path | None = None, timeout: float = 120,
                ) -> subprocess.CompletedProcess[bytes]:
    """Run the real ``dosirak`` console script; stdin closed, output captured as bytes."""
    return subprocess.run([DOSIRAK, *args], cwd=cwd, env=dict(os.environ), capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, check=False)


@pytest.fixture(autouse=True)
def forget_service_modules():
    """Service files imported in this process are per test (each has its own tmp_path)."""
    path = list(sys.path)
    yield
    sys.modules.pop("iris_service", None)
    sys.path[:] = path
