"""0.x's ``save(yatai_url=...)``: the seed's packer saving to a real dosirak hub (the seeds'
Yatai) beside the local store; another home pulls the bento and serves it."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub_process import HubProcess
from legacy.seed import SEED_PACKER, SEED_SERVICE, cli, renamed, run_python, write_project
from live_server import Served

ROW = [[5.1, 3.5, 1.4, 0.2]]


@pytest.fixture
def hub(tmp_path: Path) -> HubProcess:
    started = HubProcess(tmp_path / "hub")
    yield started
    started.stop()


def test_save_with_yatai_url_pushes_to_the_hub(hub: HubProcess, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    packer = renamed(SEED_PACKER).replace(
        "iris_classifier_service.save()", f"iris_classifier_service.save(yatai_url={hub.url!r})")
    project = write_project(tmp_path / "project", renamed(SEED_SERVICE), packer)

    done = run_python(project, "bento_packer.py")  # not signed in: nothing is saved
    assert done.returncode == 1 and f"dosirak hub login {hub.url}" in done.stderr, done.stderr
    assert "irisclassifier" not in cli("list", "-o", "json").stdout

    assert cli("hub", "login", hub.url, "--token", hub.admin_token).returncode == 0
    done = run_python(project, "bento_packer.py")
    assert done.returncode == 0, done.stderr
    with hub.client() as client:
        pushed = client.version("bento", "irisclassifier:latest")
    assert pushed["name"] == "irisclassifier"

    monkeypatch.setenv("DOSIRAK_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("DOSIRAK_HUB_TOKEN", hub.admin_token)
    monkeypatch.setenv("DOSIRAK_HUB_URL", hub.url)
    done = cli("pull", "irisclassifier:latest")
    assert done.returncode == 0, done.stderr
    with Served(["IrisClassifier:latest", "--port", "0"], cwd=tmp_path) as server:
        status, _, answer = server.post("/predict", ROW)
        assert (status, answer) == (200, [0])
