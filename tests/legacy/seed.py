"""Seed 001's own files, with only ``bentoml`` renamed, and helpers to run them for real.

``SEED_SERVICE`` and ``SEED_PACKER`` are copied from ``seeds/001_*.txt`` as written (comments
included); ``project`` writes them into a folder, ``pack`` runs the packer there in a real
Python process, as the seed's ``python bento_packer.py`` does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SEED_SERVICE = '''\
# bento_service.py
import pandas as pd

from bentoml import env, artifacts, api, BentoService
from bentoml.adapters import DataframeInput
from bentoml.frameworks.sklearn import SklearnModelArtifact

@env(infer_pip_packages=True)
@artifacts([SklearnModelArtifact('model')])
class IrisClassifier(BentoService):
    """
    A minimum prediction service exposing a Scikit-learn model
    """

    @api(input=DataframeInput(), batch=True)
    def predict(self, df: pd.DataFrame):
        """
        An inference API named `predict` with Dataframe input adapter, which codifies
        how HTTP requests or CSV files are converted to a pandas Dataframe object as the
        inference API function input
        """
        return self.artifacts.model.predict(df)
'''

SEED_PACKER = '''\
# bento_packer.py
# 모델 학습
from sklearn import svm
from sklearn import datasets

clf = svm.SVC(gamma='scale')
iris = datasets.load_iris()
X, y = iris.data, iris.target
clf.fit(X, y)

# bento_service.py에서 정의한 IrisClassifier
from bento_service import IrisClassifier

# IrisClassifier 인스턴스 생성
iris_classifier_service = IrisClassifier()

# Model Artifact를 Pack
iris_classifier_service.pack('model', clf)

# Model Serving을 위한 서비스를 Disk에 저장
saved_path = iris_classifier_service.save()
'''

DOSIRAK = str(Path(sys.executable).parent / "dosirak")


def renamed(source: str) -> str:
    """The seed's code with the product's name swapped, and nothing else."""
    return source.replace("bentoml", "dosirak")


def write_project(folder: Path, service: str, packer: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bento_service.py").write_text(service, encoding="utf-8")
    (folder / "bento_packer.py").write_text(packer, encoding="utf-8")
    return folder


def run_python(folder: Path, script: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python SCRIPT`` in ``folder``, in a real process with the test's DOSIRAK_HOME."""
    return subprocess.run([sys.executable, script], cwd=folder, env=dict(os.environ),
                          capture_output=True, text=True, timeout=timeout, check=False)


def cli(*args: str, cwd: Path | None = None, timeout: float = 300
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOSIRAK, *args], cwd=cwd, env=dict(os.environ),
                          capture_output=True, text=True, timeout=timeout, check=False)
