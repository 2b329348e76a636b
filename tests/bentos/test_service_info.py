"""What a build reads of the service in a child process: runners, APIs, the OpenAPI document, the
default name, models the service uses; import failures with their file and line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from openapi_spec_validator import validate

import dosirak
from dosirak.exceptions import ServiceImportFailed

# On PYTHONPATH, this makes scikit-learn impossible to import, as in a CI without it.
NO_SKLEARN = '''
import sys

class _NoSklearn:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "sklearn":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoSklearn())
'''


def _cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "dosirak"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def without_sklearn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Child processes (the build's service import) cannot import scikit-learn."""
    folder = tmp_path / "no_sklearn"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(NO_SKLEARN)
    monkeypatch.setenv("PYTHONPATH", str(folder))


def test_iris_bento_records_runners_apis_and_openapi(iris_project: Path,
                                                     iris_model: dosirak.Model) -> None:
    bento = dosirak.bentos.build(iris_project)
    info = yaml.safe_load((bento.path / "bento.yaml").read_text())
    assert info["runners"] == [{"name": "iris_clf", "models": [str(iris_model.tag)],
                                "methods": {"predict": {"batchable": True,
                                                        "batch_dim": [0, 0]}}}]
    [api] = info["apis"]
    assert (api["name"], api["route"]) == ("classify", "/classify")
    assert api["input"]["type"] == api["output"]["type"] == "NumpyNdarray"
    assert api["input"]["spec"] == dosirak.io.NumpyNdarray().to_spec()
    assert "apis_unknown_reason" not in info
    document = yaml.safe_load((bento.path / "apis/openapi.yaml").read_text())
    validate(document)
    assert document["info"]["title"] == "iris_classifier"
    assert "/classify" in document["paths"]
    assert "apis/openapi.yaml" in info["manifest"]


def test_the_build_process_stays_clean(iris_project: Path, iris_model: dosirak.Model) -> None:
    # A fresh interpreter builds; the service and its frameworks were imported elsewhere.
    code = ("import sys, dosirak; b = dosirak.bentos.build(sys.argv[1]); "
            "assert b.info['apis'][0]['name'] == 'classify'; "
            "print(sorted(m for m in ('service', 'sklearn', 'dosirak.server.openapi') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(iris_project)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_iris_builds_whole_where_sklearn_cannot_be_imported(
        iris_project: Path, iris_model: dosirak.Model, without_sklearn: None) -> None:
    # dosirak imports a model's framework only to load it: the service imports without it.
    bento = dosirak.bentos.build(iris_project)
    assert [api["name"] for api in bento.info["apis"]] == ["classify"]
    assert (bento.path / "apis/openapi.yaml").is_file()


def test_missing_module_with_models_listed_still_builds(
        iris_project: Path, iris_model: dosirak.Model, without_sklearn: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    service = iris_project / "service.py"
    service.write_text(service.read_text().replace(
        "import numpy as np\n", "import numpy as np\nimport sklearn.linear_model  # noqa\n"))
    line = service.read_text().splitlines().index("import sklearn.linear_model  # noqa") + 1
    done = _cli("build", iris_project, "-o", "tag")
    assert done.returncode == 0, done.stderr
    assert "the OpenAPI document will be produced on first serve" in done.stderr
    assert f"service.py, line {line}: ModuleNotFoundError: No module named 'sklearn" \
        in done.stderr
    bento = dosirak.bentos.get(done.stdout.strip())
    info = yaml.safe_load((bento.path / "bento.yaml").read_text())
    assert info["runners"] is None and info["apis"] is None
    assert "first serve" in info["apis_unknown_reason"]
    assert not (bento.path / "apis").exists()
    assert [m["tag"] for m in info["models"]] == [str(iris_model.tag)]
    # The same sources where sklearn imports: APIs known, the same digest (they are not in it).
    monkeypatch.delenv("PYTHONPATH")
    whole = dosirak.bentos.build(iris_project)
    assert whole.info["apis"] is not None and whole.digest == bento.digest


def test_missing_module_without_models_fails_clearly(iris_project: Path,
                                                     iris_model: dosirak.Model) -> None:
    (iris_project / "bentofile.yaml").write_text("service: service.py:svc\n")
    service = iris_project / "service.py"
    service.write_text("import dosirak\nimport not_installed_anywhere\n")
    with pytest.raises(ServiceImportFailed, match=r"service.py, line 2: ModuleNotFoundError: "
                       r"No module named 'not_installed_anywhere'.*`models:`"):
        dosirak.bentos.build(iris_project)
    done = _cli("build", iris_project)
    assert done.returncode == 1
    assert "service.py, line 2" in done.stderr and "not_installed_anywhere" in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 3
    assert dosirak.bentos.list() == []


def test_syntax_error_and_failing_import_name_file_and_line(iris_project: Path) -> None:
    service = iris_project / "service.py"
    service.write_text("import dosirak\n\ndef broken(:\n    pass\n")
    with pytest.raises(ServiceImportFailed, match=r"service.py, line 3: SyntaxError"):
        dosirak.bentos.build(iris_project)
    # The failing line is in a module the service imports: that file, that line.
    (iris_project / "helper.py").write_text("X = 1\nraise ValueError('no config for X')\n")
    service.write_text("import dosirak\nimport helper\n")
    with pytest.raises(ServiceImportFailed, match=r"helper.py, line 2: ValueError: no config"):
        dosirak.bentos.build(iris_project)
    done = _cli("build", iris_project)
    assert done.returncode == 1 and "helper.py, line 2" in done.stderr, done.stderr
    # A module that defines no such service: the loader's own message.
    service.write_text("import dosirak\nother = dosirak.Service('other')\n")
    with pytest.raises(ServiceImportFailed, match="has no attribute 'svc'"):
        dosirak.bentos.build(iris_project)


def test_models_used_but_not_listed_are_added(iris_project: Path,
                                              iris_model: dosirak.Model) -> None:
    listed = dosirak.bentos.build(iris_project)
    bentofile = iris_project / "bentofile.yaml"
    bentofile.write_text(bentofile.read_text().replace("models:\n  - iris_clf:latest\n", ""))
    done = _cli("build", iris_project, "-o", "tag")
    assert done.returncode == 0, done.stderr
    assert f"added the model {iris_model.tag}" in done.stderr
    bento = dosirak.bentos.get(done.stdout.strip())
    [model] = bento.models
    assert model["tag"] == str(iris_model.tag) and "not listed" in model["added"]
    # The bento is as complete as one whose bentofile lists the model: same model digest, same
    # bento digest.
    assert model["digest"] == listed.models[0]["digest"]
    assert bento.digest == listed.digest


def test_an_import_that_hangs_is_killed(iris_project: Path) -> None:
    from dosirak.bentos.service_info import ServiceImportFailure, start_reading

    (iris_project / "service.py").write_text("import time\ntime.sleep(60)\n")
    found = start_reading(iris_project, "service.py:svc").result(timeout=1.0)
    assert isinstance(found, ServiceImportFailure)
    assert "after 1 s without an answer (signal 9: SIGKILL)" in found.message
