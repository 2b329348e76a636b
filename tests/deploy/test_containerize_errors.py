"""What `dosirak containerize` says when it cannot build: one line, what happened and what to do,
exit status 1; real engines, real failures."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import dosirak
from conftest import REPO, run_cli


@pytest.fixture
def podman_images_removed(container_engines: None) -> Iterator[None]:
    """Remove the images (intermediate ones too) that the test's podman builds made."""
    def ids() -> set[str]:
        listing = subprocess.run(["podman", "images", "-a", "-q", "--no-trunc"],
                                 capture_output=True, text=True, check=True)
        return set(listing.stdout.split())

    before = ids()
    yield
    for image_id in ids() - before:
        subprocess.run(["podman", "rmi", "-f", image_id], capture_output=True, check=False)


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def _bento_with_template(tmp_path: Path, block: str) -> str:
    """An iris bento whose Dockerfile template adds ``block`` to the base stage."""
    project = tmp_path / "iris"
    shutil.copytree(REPO / "examples" / "iris", project,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (project / "Dockerfile.template").write_text(
        "{% extends bento_base_template %}\n{% block SETUP_BENTO_USER %}{{ super() }}\n"
        f"{block}\n{{% endblock %}}\n")
    bentofile = yaml.safe_load((project / "bentofile.yaml").read_text())
    bentofile["include"] = ["*.py", "Dockerfile.template"]
    bentofile["docker"] = {"dockerfile_template": "Dockerfile.template"}
    (project / "bentofile.yaml").write_text(yaml.safe_dump(bentofile))
    return str(dosirak.bentos.build(project).tag)


def test_no_engine_on_path_says_which_were_looked_for_and_how_to_install(
        bento_home: str, tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    os.environ["PATH"], saved = str(bare), os.environ["PATH"]
    try:
        result = run_cli("containerize", bento_home, home=Path(os.environ["DOSIRAK_HOME"]),
                         check=False)
    finally:
        os.environ["PATH"] = saved
    assert result.returncode == 1
    line = _one_line(result.stderr)
    assert "looked for docker, podman, buildah on PATH" in line
    assert "apt-get install docker.io" in line


def test_a_docker_daemon_that_does_not_answer_is_named(bento_home: str,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")
    result = run_cli("containerize", bento_home, "--backend", "docker",
                     home=Path(os.environ["DOSIRAK_HOME"]), check=False)
    assert result.returncode == 1
    line = _one_line(result.stderr)
    assert "the Docker daemon is not running" in line and "--backend podman" in line


def test_a_failed_build_ends_with_the_engines_last_lines(bento_home: str, tmp_path: Path,
                                                         podman_images_removed: None) -> None:
    tag = _bento_with_template(tmp_path, 'RUN ["/bin/sh", "-c", "echo the-step-failed >&2; '
                                         'exit 3"]')
    result = run_cli("containerize", tag, "--backend", "podman", "--no-vendor", "-t",
                     "dosirak-test-failed:1", home=Path(os.environ["DOSIRAK_HOME"]), check=False)
    assert result.returncode == 1
    line = _one_line(result.stderr)
    assert line.startswith("error: the podman build failed (exit")
    assert "the-step-failed" in line


def test_a_build_step_killed_with_exit_137_is_named_as_the_oom_killer(
        bento_home: str, tmp_path: Path, podman_images_removed: None) -> None:
    # SIGKILL is what the out-of-memory killer sends; the step exits 137 as it would. (A child
    # shell: PID 1 of the build container would ignore the signal.)
    tag = _bento_with_template(tmp_path, 'RUN ["/bin/sh", "-c", "/bin/sh -c \'kill -KILL $$\'; '
                                         'exit $?"]')
    result = run_cli("containerize", tag, "--backend", "podman", "--no-vendor", "-t",
                     "dosirak-test-killed:1", home=Path(os.environ["DOSIRAK_HOME"]), check=False)
    assert result.returncode == 1
    line = _one_line(result.stderr)
    assert "killed (exit 137" in line and "out-of-memory" in line


def test_a_bad_platform_and_a_missing_bento_are_one_line_errors(bento_home: str) -> None:
    home = Path(os.environ["DOSIRAK_HOME"])
    result = run_cli("containerize", bento_home, "--platform", "windows/amd64", "--dry-run",
                     home=home, check=False)
    assert result.returncode == 1 and "use linux/amd64 or linux/arm64" in _one_line(
        result.stderr)
    result = run_cli("containerize", "no_such_bento", home=home, check=False)
    assert result.returncode == 1 and "no bento 'no_such_bento:latest'" in _one_line(result.stderr)
