"""scripts/_venv.sh: what each script installs, and that a second run installs nothing.

The scripts run for real, in a copy of the repository's pyproject.toml and scripts; only the
venv's python is a recorder of the pip commands it is given (the installs themselves would take
minutes and a network).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORDER = f"""#!/bin/sh
if [ "$1" = "-m" ]; then echo "$*" >> "$(dirname "$0")/pip.log"; exit 0; fi
if [ "$1" = "-c" ]; then exit 0; fi
exec {sys.executable} "$@"
"""


def extras_of(script: str) -> str:
    line = next(line for line in (REPO / "scripts" / script).read_text().splitlines()
                if line.startswith("ensure_venv "))
    return line.split(None, 1)[1].strip('"')


def pip_commands(tmp_path: Path, extras: str, runs: int = 1) -> list[str]:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    shutil.copy(REPO / "scripts" / "_venv.sh", tmp_path / "scripts")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(RECORDER)
    python.chmod(0o755)
    for _ in range(runs):
        subprocess.run(["bash", "-c", f"source scripts/_venv.sh; ensure_venv '{extras}'"],
                       cwd=tmp_path, check=True, timeout=60)
    log = python.parent / "pip.log"
    return log.read_text().splitlines() if log.exists() else []


def test_the_demo_installs_no_torch(tmp_path: Path) -> None:
    commands = pip_commands(tmp_path, extras_of("demo"))
    assert commands == ["-m pip install -q -e .[sklearn]"]


def test_the_tests_get_the_pinned_cpu_torch_once(tmp_path: Path) -> None:
    extras = extras_of("test")
    commands = pip_commands(tmp_path, extras, runs=2)
    assert commands == ["-m pip install -q torch==2.13.0",
                        f"-m pip install -q -e .[{extras}] torch==2.13.0"]
