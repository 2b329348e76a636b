"""A bentofile with ``models:`` builds in a real venv where scikit-learn is not installed (CI
without the framework), with the real ``dosirak build`` of that venv.

The venv is made once per test session (``python -m venv`` and ``pip install -e`` of this repo:
dosirak's core dependencies, no extras; about 20 s from pip's cache). The iris model is saved with
the main venv, which has scikit-learn, into the test's store.

Why this fails without the behaviour: ``test_service_importing_the_framework_*`` shows the same
service failing to build when ``models:`` is absent, so the passing build with ``models:`` is the
behaviour under test and not an environment that happens to have the framework (checked too).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dosirak
from dosirak.bentos.build import manifest_digest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with dosirak (editable, from this repo) and its core dependencies only."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    env = {key: value for key, value in os.environ.items()
           if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                          "--disable-pip-version-check", "-e", str(REPO)],
                         capture_output=True, text=True, env=env, timeout=300, check=False)
    assert pip.returncode == 0, pip.stderr[-2000:]
    print(f"bare venv made in {time.monotonic() - start:.1f} s")
    return venv


def _run(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "dosirak"), *args], capture_output=True,
                          text=True, timeout=120, check=False)


def _without_framework(venv: Path) -> None:
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import dosirak, importlib.util; print(dosirak.__file__); "
         "print(importlib.util.find_spec('sklearn') is None)"],
        capture_output=True, text=True, check=True, timeout=60)
    where, missing = probe.stdout.split()
    assert Path(where).resolve().is_relative_to(REPO / "src")  # this repo's code is under test
    assert missing == "True", "scikit-learn is installed in the bare venv"


def _iris_digest() -> str:
    return manifest_digest(dosirak.models.get("iris_clf:latest").info.manifest)


def test_iris_builds_without_scikit_learn(bare_venv: Path, iris_project: Path) -> None:
    _without_framework(bare_venv)
    built = _run(bare_venv, "build", str(iris_project), "-o", "json")
    assert built.returncode == 0, built.stderr
    tag = json.loads(built.stdout)["tag"]
    got = _run(bare_venv, "get", tag, "-o", "json")
    assert got.returncode == 0, got.stderr
    info = json.loads(got.stdout)
    model = dosirak.models.get("iris_clf:latest")
    assert [(m["tag"], m["digest"]) for m in info["models"]] == [(str(model.tag), _iris_digest())]
    # dosirak.sklearn loads scikit-learn only when the model is loaded: the service imports,
    # so its APIs are read at build time even here.
    assert [api["name"] for api in info["apis"]] == ["classify"]
    # The lock says the framework was not there rather than pinning something else.
    lock = info["environment"]["python"]["lock"]
    assert "scikit-learn  # not installed in the build environment" in lock


def test_service_importing_the_framework_builds_with_apis_unknown(
        bare_venv: Path, iris_project: Path) -> None:
    service = iris_project / "service.py"
    service.write_text("import sklearn  # noqa: F401\n" + service.read_text())
    built = _run(bare_venv, "build", str(iris_project), "-o", "json")
    assert built.returncode == 0, built.stderr
    assert "OpenAPI document will be produced on first serve" in built.stderr
    assert "No module named 'sklearn'" in built.stderr
    info = json.loads(_run(bare_venv, "get", json.loads(built.stdout)["tag"], "-o",
                           "json").stdout)
    assert info["apis"] is None and info["runners"] is None
    assert "sklearn" in info["apis_unknown_reason"]
    assert [m["digest"] for m in info["models"]] == [_iris_digest()]
    assert not (Path(info["path"]) / "apis" / "openapi.yaml").exists()


def test_service_importing_the_framework_without_models_fails(
        bare_venv: Path, iris_project: Path) -> None:
    # The counterpart: without `models:` the same service does not build here, so the builds
    # above pass because of `models:`, not because the framework was somehow importable.
    service = iris_project / "service.py"
    service.write_text("import sklearn  # noqa: F401\n" + service.read_text())
    bentofile = iris_project / "bentofile.yaml"
    bentofile.write_text(bentofile.read_text().replace("models:\n  - iris_clf:latest\n", ""))
    assert "models:" not in bentofile.read_text()
    built = _run(bare_venv, "build", str(iris_project))
    assert built.returncode == 1, built.stderr
    assert "sklearn" in built.stderr and "models:" in built.stderr
    assert _run(bare_venv, "list", "-o", "json").stdout.strip() == "[]"
