"""bentofile.yaml and [tool.dosirak.bento]: every key read, every bad one refused with a fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from dosirak.bentos.bentofile import DescriptionFile, load_bentofile
from dosirak.exceptions import InvalidArgument

FULL = """
service: "service.py:svc"
name: iris_classifier
description: {file: ./README.md}
labels: {owner: team}
include: ["*.py", "data/"]
exclude: "tests/"
python:
  packages: [scikit-learn>=1.3]
  requirements_txt: requirements.txt
  lock: false
  index_url: https://pypi.example/simple
  extra_index_url: https://extra.example/simple
  find_links: [./wheels]
  wheels: [./wheels/a-1.0-py3-none-any.whl]
docker:
  distro: debian
  python_version: "3.11"
  system_packages: [libgomp1]
  env: {OMP_NUM_THREADS: "1"}
  setup_script: setup.sh
  base_image: python:3.11-slim
  dockerfile_template: Dockerfile.j2
models:
  - iris_clf:latest
  - {tag: "iris_clf:abc", alias: old}
envs:
  - {name: STAGE, value: demo}
"""


def _write(tmp_path: Path, text: str, name: str = "bentofile.yaml") -> Path:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_every_key_is_read(tmp_path: Path) -> None:
    spec = load_bentofile(_write(tmp_path, FULL))
    assert spec.service == "service.py:svc" and spec.name == "iris_classifier"
    assert spec.description == DescriptionFile(file="./README.md")
    assert spec.include == ["*.py", "data/"] and spec.exclude == ["tests/"]
    assert spec.python.packages == ["scikit-learn>=1.3"] and spec.python.lock is False
    assert spec.python.extra_index_url == ["https://extra.example/simple"]
    assert spec.docker.env == {"OMP_NUM_THREADS": "1"}
    assert spec.docker.system_packages == ["libgomp1"]
    assert [(m.tag, m.alias) for m in spec.models] == [("iris_clf:latest", None),
                                                        ("iris_clf:abc", "old")]
    assert spec.envs[0].name == "STAGE" and spec.envs[0].value == "demo"


def test_defaults(tmp_path: Path) -> None:
    spec = load_bentofile(_write(tmp_path, "service: service:svc\n"))
    assert spec.include == ["*"] and spec.exclude == [] and spec.python.lock is True
    assert spec.models == [] and spec.name is None


def test_numbers_are_strings_where_strings_are_meant(tmp_path: Path) -> None:
    spec = load_bentofile(_write(tmp_path, "service: s:svc\nlabels: {version: 2}\n"
                                           "docker: {env: {THREADS: 1}}\n"
                                           "envs: [{name: A, value: 1.5}]\n"))
    assert spec.labels == {"version": "2"} and spec.docker.env == {"THREADS": "1"}
    assert spec.envs[0].value == "1.5"


def test_pyproject_table(tmp_path: Path) -> None:
    _write(tmp_path, '[tool.dosirak.bento]\nservice = "app:svc"\ninclude = ["*.py"]\n'
                     '[tool.dosirak.bento.python]\npackages = ["numpy"]\n', "pyproject.toml")
    spec = load_bentofile(tmp_path)
    assert spec.service == "app:svc" and spec.python.packages == ["numpy"]


def test_explicit_file_wins(tmp_path: Path) -> None:
    _write(tmp_path, "service: a:svc\n")
    other = tmp_path / "other.yaml"
    other.write_text("service: b:svc\n")
    assert load_bentofile(tmp_path, other).service == "b:svc"


@pytest.mark.parametrize(("text", "expected"), [
    ("service: s:svc\nmodles: [a]\n", "modles: unknown key (did you mean 'models'?)"),
    ("service: s:svc\npython: {packagse: [a]}\n",
     "python.packagse: unknown key (did you mean 'packages'?); valid keys under python:"),
    ("service: s:svc\ndocker: {distor: debian}\n", "(did you mean 'distro'?)"),
    ("service: s:svc\nmodels: [{tag: a, alais: b}]\n", "(did you mean 'alias'?)"),
    ("service: s:svc\ndescription: {fiel: a.md}\n", "(did you mean 'file'?)"),
    ("service: s:svc\nenvs: [{nmae: A}]\n", "(did you mean 'name'?)"),
    ("name: x\n", "service: missing, it is required"),
    ("service: svc\n", "is not 'module:attribute'"),
    ("service: a/b:svc\n", "is not 'module:attribute'"),
    ("service: ../up.py:svc\n", "reaches outside the build directory"),
    ("service: s:svc\nname: Bad Name\n", "name = 'Bad Name': invalid name"),
    ("service: s:svc\nmodels: ['Iris:v1']\n", "is not lowercase"),
    ("service: s:svc\nmodels: ['iris:']\n", "ends with ':'"),
    ("service: s:svc\ninclude: ['../secrets/*']\n", "reaches outside the build directory"),
    ("service: s:svc\nexclude: ['~/x']\n", "reaches outside the build directory"),
    ("service: s:svc\npython: {lock: maybe}\n", "python.lock = 'maybe'"),
    ("service: s:svc\nlabels: [a, b]\n", "labels"),
    ("- a\n- b\n", "must hold a mapping"),
    ("service: [unclosed\n", "is not valid YAML at line"),
])
def test_bad_keys_are_refused_clearly(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        load_bentofile(_write(tmp_path, text))
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message and str(tmp_path / "bentofile.yaml") in message


def test_no_bentofile(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"no bentofile\.yaml in .* pass -f BENTOFILE"):
        load_bentofile(tmp_path)
    with pytest.raises(InvalidArgument, match="does not exist; check the path given with -f"):
        load_bentofile(tmp_path, tmp_path / "missing.yaml")


@pytest.mark.parametrize(("service", "files"), [
    ("service:svc", ("service.py", "service/__init__.py")),
    ("pkg.app:svc.inner", ("pkg/app.py", "pkg/app/__init__.py")),
    ("./src/app.py:svc", ("src/app.py",)),
])
def test_service_forms(tmp_path: Path, service: str, files: tuple[str, ...]) -> None:
    assert load_bentofile(_write(tmp_path, f"service: {service}\n")).service_files() == files


def test_pyproject_without_the_table(tmp_path: Path) -> None:
    _write(tmp_path, "[project]\nname = 'x'\n", "pyproject.toml")
    with pytest.raises(InvalidArgument, match=r"no bentofile\.yaml in"):
        load_bentofile(tmp_path)
    with pytest.raises(InvalidArgument, match=r"has no \[tool\.dosirak\.bento\] table"):
        load_bentofile(tmp_path, tmp_path / "pyproject.toml")
