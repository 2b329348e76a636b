"""dosirak.bentos.build: the iris example into a real store; what a bento holds; its digest."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path

import pytest
import yaml

import dosirak
from dosirak.exceptions import AlreadyExists, InvalidArgument, ModelNotFound


def test_iris_example_builds(iris_project: Path, iris_model: dosirak.Model) -> None:
    bento = dosirak.bentos.build(iris_project)
    assert bento.tag.name == "iris_classifier" and bento.path.is_dir()
    files = sorted(p.relative_to(bento.path).as_posix()
                   for p in bento.path.rglob("*") if p.is_file())
    assert files == ["README.md", "apis/openapi.yaml", "bento.yaml",
                     "env/python/requirements.lock.txt",
                     "env/python/requirements.txt", "src/service.py", "src/train.py"]
    assert (bento.path / "src/service.py").read_bytes() == \
        (iris_project / "service.py").read_bytes()
    info = yaml.safe_load((bento.path / "bento.yaml").read_text())
    assert info["service"] == "service.py:svc"
    assert info["labels"] == {"owner": "dosirak-examples", "stage": "demo"}
    assert info["dosirak_version"] == dosirak.__version__
    assert info["description"].startswith("# iris_classifier")
    assert (bento.path / "README.md").read_text() == info["description"]
    # The model by tag and by the digest of its manifest; its files are not copied.
    manifest = {path: [entry["size"], entry["sha256"]]
                for path, entry in iris_model.info.manifest.items()}
    expected = hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":"))
                              .encode()).hexdigest()
    assert info["models"] == [{"tag": str(iris_model.tag), "digest": expected, "alias": None}]
    assert info["size"] == sum(e["size"] for e in info["manifest"].values())
    assert set(info["manifest"]) == set(files) - {"bento.yaml"}


def test_lock_pins_the_installed_versions(iris_project: Path) -> None:
    (iris_project / "requirements.txt").write_text("# a comment\npyyaml>=6  # inline\n")
    text = (iris_project / "bentofile.yaml").read_text()
    (iris_project / "bentofile.yaml").write_text(text.replace(
        "    - numpy\n", "    - numpy\n    - not-a-real-package-xyz>=1\n"
                        "  requirements_txt: requirements.txt\n"))
    bento = dosirak.bentos.build(iris_project)
    folder = bento.path / "env/python"
    assert (folder / "requirements.txt").read_text().splitlines() == [
        "scikit-learn", "numpy", "not-a-real-package-xyz>=1", "pyyaml>=6",
        f"dosirak=={dosirak.__version__}"]
    lock = (folder / "requirements.lock.txt").read_text().splitlines()
    for name in ("scikit-learn", "numpy", "scipy", "pyyaml", "pydantic", "dosirak"):
        assert f"{name}=={importlib.metadata.version(name)}" in lock
    assert "not-a-real-package-xyz>=1  # not installed in the build environment" in lock
    assert bento.info["environment"]["python"]["lock"] == lock


def test_same_inputs_same_digest_one_byte_changes_it(iris_project: Path) -> None:
    first = dosirak.bentos.build(iris_project)
    second = dosirak.bentos.build(iris_project, version="v2", labels={"extra": "label"})
    assert first.tag != second.tag and first.digest == second.digest
    service = iris_project / "service.py"
    source = service.read_bytes()
    assert source.endswith(b"\n")
    service.write_bytes(source[:-1] + b" ")  # one byte changed, same size
    changed = dosirak.bentos.build(iris_project)
    assert changed.digest != first.digest
    service.write_bytes(source)
    assert dosirak.bentos.build(iris_project).digest == first.digest


def test_another_model_content_changes_the_digest(iris_project: Path) -> None:
    first = dosirak.bentos.build(iris_project)
    # Another classifier under the same name (the service imports it: same framework).
    from sklearn.dummy import DummyClassifier

    other = DummyClassifier().fit([[0.0, 0.0, 0.0, 0.0]], [0])
    dosirak.sklearn.save_model("iris_clf", other, signatures={"predict": {"batchable": True}})
    assert dosirak.bentos.build(iris_project).digest != first.digest


def test_version_and_labels(iris_project: Path) -> None:
    bento = dosirak.bentos.build(iris_project, version="1.0", labels={"stage": "prod"})
    assert str(bento.tag) == "iris_classifier:1.0"
    assert bento.labels == {"owner": "dosirak-examples", "stage": "prod"}
    with pytest.raises(AlreadyExists, match=r"iris_classifier:1\.0 exists already; build "
                                            "with another --version"):
        dosirak.bentos.build(iris_project, version="1.0")
    with pytest.raises(InvalidArgument, match="invalid version 'V 2'"):
        dosirak.bentos.build(iris_project, version="V 2")


def test_name_defaults_to_the_service_then_the_directory(tmp_path: Path,
                                                          iris_model: dosirak.Model) -> None:
    project = tmp_path / "My Project"
    project.mkdir()
    (project / "bentofile.yaml").write_text("service: app:svc\n")
    (project / "app.py").write_text("import dosirak\nsvc = dosirak.Service('from_service')\n")
    assert dosirak.bentos.build(project).tag.name == "from_service"
    # The service cannot be imported here (and the bentofile lists its model): the directory.
    (project / "bentofile.yaml").write_text("service: app:svc\nmodels: [iris_clf:latest]\n")
    (project / "app.py").write_text("import not_installed_anywhere\n")
    assert dosirak.bentos.build(project).tag.name == "my_project"


def test_bad_builds_say_how_to_fix(iris_project: Path, tmp_path: Path,
                                   dosirak_home: Path) -> None:
    with pytest.raises(InvalidArgument, match="is not a directory"):
        dosirak.bentos.build(iris_project / "service.py")
    with pytest.raises(InvalidArgument, match="is not a directory"):
        dosirak.bentos.build(tmp_path / "missing")
    (iris_project / "bentofile.yaml").write_text("service: service.py:svc\nmodels: [nope:v1]\n")
    with pytest.raises(ModelNotFound, match="lists the model nope:v1, which the model store "
                                            "does not hold: save or import it first"):
        dosirak.bentos.build(iris_project)
    (iris_project / "bentofile.yaml").write_text(
        "service: service.py:svc\ndescription: {file: ../secret.md}\n")
    with pytest.raises(InvalidArgument, match="leads outside the build directory"):
        dosirak.bentos.build(iris_project)
    assert dosirak.bentos.list() == []
    assert not list((dosirak_home / "bentos" / ".tmp").iterdir())  # drafts discarded


def test_service_must_be_shipped(iris_project: Path) -> None:
    text = (iris_project / "bentofile.yaml").read_text()
    (iris_project / "bentofile.yaml").write_text(text.replace('"*.py"', '"train.py"'))
    with pytest.raises(InvalidArgument, match=r"none of service\.py is among the included "
                                              "files .* add it to `include:`"):
        dosirak.bentos.build(iris_project)


def test_wheels_docker_and_envs_are_recorded(iris_project: Path) -> None:
    wheel = iris_project / "wheels" / "extra-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    wheel.write_bytes(b"wheel bytes")
    (iris_project / "bentofile.yaml").write_text(
        "service: service.py:svc\nname: iris\npython:\n  lock: false\n"
        "  wheels: [wheels/extra-1.0-py3-none-any.whl]\n"
        "docker: {distro: debian, system_packages: [libgomp1], env: {A: '1'}}\n"
        "envs: [{name: STAGE, value: demo}]\n")
    bento = dosirak.bentos.build(iris_project)
    folder = bento.path / "env/python"
    assert (folder / "wheels/extra-1.0-py3-none-any.whl").read_bytes() == b"wheel bytes"
    assert not (folder / "requirements.lock.txt").exists()
    environment = bento.info["environment"]
    assert environment["python"]["lock"] is None
    assert environment["python"]["wheels"] == ["wheels/extra-1.0-py3-none-any.whl"]
    assert environment["docker"]["distro"] == "debian"
    assert environment["docker"]["system_packages"] == ["libgomp1"]
    assert environment["docker"]["env"] == {"A": "1"}
    assert environment["envs"] == [{"name": "STAGE", "value": "demo"}]
    wheel.write_bytes(b"wheel byteZ")
    assert dosirak.bentos.build(iris_project).digest != bento.digest
