"""Fixtures of the 0.x API tests: the seed's project folder, packed or not."""

from __future__ import annotations

from pathlib import Path

import pytest

from legacy.seed import SEED_PACKER, SEED_SERVICE, renamed, run_python, write_project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Seed 001's bento_service.py and bento_packer.py, renamed, in a fresh folder."""
    return write_project(tmp_path / "project", renamed(SEED_SERVICE), renamed(SEED_PACKER))


@pytest.fixture
def packed(project: Path) -> Path:
    """The seed's ``python bento_packer.py`` run once: the IrisClassifier bento is saved."""
    done = run_python(project, "bento_packer.py")
    assert done.returncode == 0, done.stderr
    return project
