"""Directories in BentoML 0.13's saved-bundle layout, built here as 0.13 wrote them (its
``bentoml.yml``, ``IrisClassifier/bento_service.py`` importing ``bentoml``, joblib artifacts in
``IrisClassifier/artifacts/``): served as they are, imported and migrated into bentos."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import joblib
import pytest
import yaml
from sklearn import datasets, svm

from legacy.seed import SEED_SERVICE, cli
from live_server import Served

# What BentoML 0.13.1's SavedBundleConfig wrote for the seed's IrisClassifier.
BENTOML_YML = {
    "version": "0.13.1",
    "kind": "BentoService",
    "metadata": {"created_at": "2021-07-01 10:00:00.000000", "service_name": "IrisClassifier",
                 "service_version": "20210701100000_3F2A1B", "module_name": "bento_service",
                 "module_file": "bento_service.py"},
    "env": {"pip_packages": ["bentoml==0.13.1", "pandas", "scikit-learn"],
            "conda_env": {"name": "bentoml-default-conda-env",
                          "channels": ["defaults"], "dependencies": ["libgomp"]},
            "python_version": "3.8.10",
            "docker_base_image": "bentoml/model-server:0.13.1-py38"},
    "apis": [{"name": "predict", "docs": "An inference API named `predict`",
              "input_type": "DataframeInput", "output_type": "DefaultOutput",
              "mb_max_batch_size": 4000, "mb_max_latency": 20000, "batch": True,
              "input_config": {"orient": None, "typ": "frame", "dtype": None}}],
    "artifacts": [{"name": "model", "artifact_type": "SklearnModelArtifact",
                   "metadata": {"accuracy": 0.98}}],
}


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    root = tmp_path / "IrisClassifier_0.13"
    module = root / "IrisClassifier"
    (module / "artifacts").mkdir(parents=True)
    (module / "bento_service.py").write_text(SEED_SERVICE)  # imports bentoml, as written
    (module / "__init__.py").write_text("from bento_service import IrisClassifier\n")
    X, y = datasets.load_iris(return_X_y=True)
    joblib.dump(svm.SVC(gamma="scale").fit(X, y), module / "artifacts" / "model.pkl")
    (module / "artifacts" / "model.yml").write_text("accuracy: 0.98\n")
    for folder in (root, module):
        (folder / "bentoml.yml").write_text(yaml.safe_dump(BENTOML_YML))
    for name in ("Dockerfile", "setup.py", "MANIFEST.in", "bentoml-init.sh",
                 "docker-entrypoint.sh", "environment.yml", "requirements.txt", "README.md"):
        (root / name).write_text("# written by BentoML 0.13\n")
    (root / "bundled_pip_dependencies").mkdir()
    return root


def test_bentoml_is_resolved_in_the_loading_process_only(bundle: Path) -> None:
    assert "bentoml" not in sys.modules
    code = ("import dosirak, sys\n"
            f"svc = dosirak.load({str(bundle)!r})\n"
            "import bentoml\n"
            "print(bentoml.BentoService is dosirak.BentoService, svc.name,\n"
            "      svc.artifacts['model'].metadata, svc.version)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(maxsplit=2)[:2] == ["True", "IrisClassifier"]
    assert "{'accuracy': 0.98} 20210701100000_3F2A1B" in done.stdout
    assert "bentoml" not in sys.modules  # this process never took the name


def test_serve_a_0_13_directory_as_it_is(bundle: Path) -> None:
    with Served([str(bundle)], cwd=bundle.parent) as server:
        status, _, answer = server.post("/predict", [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
        assert (status, answer) == (200, [0, 2])
        _, metadata = server.get("/metadata")
    legacy = json.loads(metadata)["bentoml"]
    assert legacy["artifacts"][0]["metadata"] == {"accuracy": 0.98}
    assert legacy["apis"][0]["mb_max_batch_size"] == 4000


def test_migrate_lists_what_it_could_not_carry_and_the_bento_serves(bundle: Path) -> None:
    done = cli("migrate", str(bundle))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "imported irisclassifier:20210701100000_3f2a1b" in out
    assert "conda dependencies ['libgomp']" in out
    assert "docker_base_image bentoml/model-server:0.13.1-py38" in out
    assert "bundled_pip_dependencies/" in out
    assert "Dockerfile" not in out  # regenerated files are not losses
    got = json.loads(cli("get", "IrisClassifier:20210701100000_3F2A1B", "-o", "json").stdout)
    assert got["labels"]["migrated_from"] == "bentoml-0.13.1"
    assert got["bentoml"]["artifacts"][0]["metadata"] == {"accuracy": 0.98}
    with Served(["IrisClassifier:latest"], cwd=bundle.parent) as server:
        status, _, answer = server.post("/predict", [[6.7, 3.0, 5.2, 2.3]])
        assert (status, answer) == (200, [2])


def test_import_of_a_0_13_directory_migrates_it(bundle: Path) -> None:
    done = cli("import", str(bundle))
    assert done.returncode == 0, done.stderr
    assert "imported irisclassifier:" in done.stdout
    run = cli("run", "IrisClassifier:latest", "predict", "--input", "[[5.1, 3.5, 1.4, 0.2]]",
              cwd=bundle.parent)
    assert (run.returncode, run.stdout.strip()) == (0, "[0]"), run.stderr


def test_save_to_dir_writes_the_0_13_layout_that_serves(tmp_path: Path) -> None:
    (tmp_path / "bento_service.py").write_text(SEED_SERVICE.replace("bentoml", "dosirak"))
    code = ("from sklearn import svm, datasets\n"
            "from bento_service import IrisClassifier\n"
            "X, y = datasets.load_iris(return_X_y=True)\n"
            "svc = IrisClassifier().pack('model', svm.SVC().fit(X, y), metadata={'n': 150})\n"
            "print(svc.save_to_dir('saved'))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    saved = tmp_path / "saved"
    assert (saved / "bentoml.yml").is_file()
    assert (saved / "IrisClassifier" / "artifacts" / "model.pkl").is_file()
    assert yaml.safe_load((saved / "IrisClassifier" / "artifacts" / "model.yml").read_text()) \
        == {"n": 150}
    with Served([str(saved)], cwd=tmp_path) as server:
        status, _, answer = server.post("/predict", [[5.1, 3.5, 1.4, 0.2]])
        assert (status, answer) == (200, [0])


def test_a_directory_that_is_no_bundle_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "bentoml.yml").write_text("kind: BentoService\n")
    done = cli("migrate", str(tmp_path / "broken"))
    assert done.returncode == 1
    assert "not a BentoML 0.x bundle description" in done.stderr
