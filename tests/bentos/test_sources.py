"""Which files a bento ships: include, exclude, .dosirakignore, defaults, links."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dosirak.bentos.bentofile import Bentofile
from dosirak.bentos.sources import select
from dosirak.exceptions import InvalidArgument


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for relative in ("service.py", "lib/util.py", "lib/notes.txt", "data/a.csv", "data/b.csv",
                     "tests/test_x.py", "__pycache__/service.cpython-311.pyc", ".git/HEAD",
                     "deep/er/model.py", "secret.env"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(relative)
    return root


def _select(root: Path, **keys: object) -> list[str]:
    return select(root, Bentofile.model_validate({"service": "service:svc", **keys}))


def test_everything_but_the_defaults(project: Path) -> None:
    assert _select(project) == ["data/a.csv", "data/b.csv", "deep/er/model.py", "lib/notes.txt",
                                "lib/util.py", "secret.env", "service.py", "tests/test_x.py"]


def test_include_and_exclude_are_gitignore_patterns(project: Path) -> None:
    assert _select(project, include=["*.py"], exclude=["tests/"]) == [
        "deep/er/model.py", "lib/util.py", "service.py"]
    assert _select(project, include=["/*.py", "data/"], exclude=["b.csv"]) == [
        "data/a.csv", "service.py"]
    assert _select(project, include=["*.py", "*.csv"], exclude=["data/*", "!data/b.csv"]) == [
        "data/b.csv", "deep/er/model.py", "lib/util.py", "service.py", "tests/test_x.py"]


def test_dosirakignore(project: Path) -> None:
    (project / ".dosirakignore").write_text("# comments are skipped\n*.env\ndata/\n\n")
    assert _select(project, include=["*"], exclude=["lib/"]) == [
        ".dosirakignore", "deep/er/model.py", "service.py", "tests/test_x.py"]


def test_dosirakignore_reaching_outside_is_refused(project: Path) -> None:
    (project / ".dosirakignore").write_text("../other\n")
    with pytest.raises(InvalidArgument, match=r"\.dosirakignore: '\.\./other' reaches outside"):
        _select(project)


def test_link_inside_is_followed_link_outside_refused(project: Path, tmp_path: Path) -> None:
    os.symlink(project / "lib" / "util.py", project / "alias.py")
    assert "alias.py" in _select(project, include=["*.py"])
    (tmp_path / "outside.py").write_text("secret")
    os.symlink(tmp_path / "outside.py", project / "leak.py")
    with pytest.raises(InvalidArgument, match=r"'leak\.py' leads outside the build directory"):
        _select(project, include=["*.py"])
