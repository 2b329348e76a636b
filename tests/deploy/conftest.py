"""Fixtures of the deploy tests: a real iris bento whose bentofile carries hostile values, and
the container engines (scripts/setup-containers makes them ready; dockerd is left as found)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOSIRAK = str(Path(sys.executable).parent / "dosirak")

# Values a shell would act on: each must reach the image exactly as written, and run nothing.
HOSTILE_ENV = {
    "SUBSHELL": "$(touch /tmp/pwned-subshell)",
    "BACKTICKS": "`touch /tmp/pwned-backticks`",
    "CHAIN": "a; touch /tmp/pwned-chain && echo b | cat",
    "QUOTES": "it's \"quoted\" \\ back\\slash \\",
    "VARIABLES": "${HOME} $PATH $$ $1",
    "JINJA": "{{ 7 * 7 }} {% if true %}x{% endif %}",
    "UNICODE": "도시락 ✓",
}
# An apt pattern: parentheses, '?', '^', '$' reach apt-get as one argument and select `sl`.
HOSTILE_PACKAGE = "?name(^sl$)"
SETUP_SCRIPT = """#!/bin/sh
set -eu
echo "setup ran as $(id -u)" > /opt/dosirak/setup-ran
"""
TEMPLATE = """{% extends bento_base_template %}
{% block SETUP_BENTO_COMPONENTS %}
{{ super() }}
RUN ["/bin/sh", "-c", "echo templated > /opt/dosirak/templated"]
{% endblock %}
"""


def run_cli(*args: str, home: Path, check: bool = True,
            timeout: float = 900) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([DOSIRAK, *args], capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "DOSIRAK_HOME": str(home)}, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"dosirak {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="session")
def hostile_bento(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(home, tag) of the iris bento built for real, its bentofile holding hostile env values,
    a hostile system package, a setup script and a Dockerfile template."""
    root = tmp_path_factory.mktemp("deploy")
    home = root / "home"
    subprocess.run([sys.executable, str(REPO / "examples" / "iris" / "train.py")], check=True,
                   env={**os.environ, "DOSIRAK_HOME": str(home)}, capture_output=True)
    project = root / "iris"
    shutil.copytree(REPO / "examples" / "iris", project,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (project / "setup.sh").write_text(SETUP_SCRIPT)
    (project / "Dockerfile.template").write_text(TEMPLATE)
    bentofile = yaml.safe_load((project / "bentofile.yaml").read_text())
    bentofile["include"] = ["*.py", "setup.sh", "Dockerfile.template"]
    bentofile["envs"] = [{"name": name, "value": value} for name, value in HOSTILE_ENV.items()]
    bentofile["docker"] = {"system_packages": [HOSTILE_PACKAGE], "setup_script": "setup.sh",
                           "dockerfile_template": "Dockerfile.template",
                           "env": {"FROM_DOCKER_ENV": "docker env"}}
    (project / "bentofile.yaml").write_text(yaml.safe_dump(bentofile, allow_unicode=True))
    tag = run_cli("build", str(project), "-o", "tag", home=home).stdout.strip()
    return home, tag


@pytest.fixture
def bento_home(hostile_bento: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Point this test's DOSIRAK_HOME at the hostile bento's home; return the bento's tag."""
    monkeypatch.setenv("DOSIRAK_HOME", str(hostile_bento[0]))
    return hostile_bento[1]


def _docker_answers() -> bool:
    docker = shutil.which("docker")
    return docker is not None and subprocess.run(
        [docker, "info"], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="session")
def container_engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """docker (dockerd), podman and the local python:3.11-slim, as scripts/setup-containers
    makes them; a dockerd it had to start is stopped at the end (left as found)."""
    pidfile = tmp_path_factory.mktemp("dockerd") / "dockerd.pid"
    was_running = _docker_answers()
    result = subprocess.run([str(REPO / "scripts" / "setup-containers")], capture_output=True,
                            text=True, check=False, timeout=900,
                            env={**os.environ, "DOSIRAK_DOCKERD_PIDFILE": str(pidfile)})
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        yield
    finally:
        if not was_running and pidfile.exists():
            _stop_dockerd(int(pidfile.read_text().strip()))


def _stop_dockerd(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.1)
