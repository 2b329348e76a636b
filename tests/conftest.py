"""Shared fixtures: every test gets its own dosirak home, so no test touches a real store."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def dosirak_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point DOSIRAK_HOME at a fresh directory under the test's tmp_path."""
    home = tmp_path / "home"
    monkeypatch.setenv("DOSIRAK_HOME", str(home))
    # Loading a bento in this process pins its models' versions (dosirak.models.pin_versions)
    # for the rest of the process: each test starts without pins, in its own home.
    import dosirak.models

    monkeypatch.setattr(dosirak.models, "_PINS", {})
    return home
