"""The real ``dosirak build`` CLI, SIGKILLed 20 times at random moments of its run: no partial bento
is ever visible to ``dosirak list`` / ``dosirak get``, and the next build works and removes the
dead builders' drafts.

Why this fails without the behaviour: if a build wrote its files where the store looks
(``bentos/<name>/<version>/``) before they were complete, a kill between the first file and
``bento.yaml`` leaves a version directory that ``dosirak get`` cannot read or whose files do not
match its manifest (``_check_visible``); if drafts were named so that ``list`` saw them, a kill
inside a build shows them as bentos; if dead builders' drafts were never cleaned, the final check
of ``.tmp/`` fails. A run whose kills all miss the build (process already gone) fails on the count
of kills that landed, so the test cannot pass by proving nothing.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from dosirak.store.manifest import hash_file
from live_server import DOSIRAK, descendants_of

KILLS = 20
SEED = int(os.environ.get("DOSIRAK_KILL_SEED", "20261204"))  # replay a failure with its seed


def _dosirak(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOSIRAK, *args], capture_output=True, text=True, timeout=60,
                          check=False)


def _check_visible(bentos: Path, checked: set[str]) -> list[str]:
    """What ``dosirak list -o json`` shows is exactly the complete version directories; each new
    one reads with ``dosirak get`` and its files match its manifest. Returns the listed tags."""
    listed = _dosirak("list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    tags = sorted(row["tag"] for row in json.loads(listed.stdout))
    on_disk = sorted(f"{name}:{version}" for name in os.listdir(bentos) if not name.startswith(".")
                     for version in os.listdir(bentos / name))
    assert tags == on_disk, "a version directory on disk that list does not show (or the reverse)"
    assert all(tag.startswith("iris_classifier:") for tag in tags), tags
    for tag in tags:
        if tag in checked:  # a stored bento never changes: hash it once
            continue
        got = _dosirak("get", tag, "-o", "json")
        assert got.returncode == 0, f"{tag}: {got.stderr}"
        info = json.loads(got.stdout)
        path = Path(info["path"])
        files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
        assert files == sorted([*info["manifest"], "bento.yaml"]), tag
        for relative, entry in info["manifest"].items():
            assert list(hash_file(path / relative)) == [entry["size"], entry["sha256"]], relative
        assert [api["name"] for api in info["apis"]] == ["classify"], tag
        assert [m["tag"].partition(":")[0] for m in info["models"]] == ["iris_clf"], tag
        checked.add(tag)
    return tags


@pytest.mark.slow
def test_sigkilled_cli_builds_leave_no_partial_bento(iris_project: Path,
                                                     dosirak_home: Path) -> None:
    bentos = dosirak_home / "bentos"
    drafts = bentos / ".tmp"
    start = time.monotonic()
    first = _dosirak("build", str(iris_project), "-o", "tag")
    full_build = time.monotonic() - start
    assert first.returncode == 0, first.stderr
    checked: set[str] = set()
    _check_visible(bentos, checked)

    rng = random.Random(SEED)
    landed = inside_draft = 0
    orphans: list[int] = []
    for kill in range(KILLS):
        delay = rng.uniform(0.0, full_build)
        builder = subprocess.Popen([DOSIRAK, "build", str(iris_project), "-o", "tag"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(delay)
            orphans += descendants_of(builder.pid)  # the service reader outlives its builder
            os.kill(builder.pid, signal.SIGKILL)
        finally:
            code = builder.wait()
        if code == -signal.SIGKILL:
            landed += 1
        # A draft named after the dead builder: the kill landed while the bento was written.
        left = [entry for entry in (os.listdir(drafts) if drafts.exists() else [])
                if entry.startswith(f"{builder.pid}-")]
        inside_draft += bool(left)
        try:
            _check_visible(bentos, checked)
        except AssertionError as error:
            raise AssertionError(f"after kill {kill} at {delay:.3f} s (seed {SEED}): "
                                 f"{error}") from error

    summary = (f"seed {SEED}: {landed}/{KILLS} kills before the build exited, {inside_draft} "
               f"with a draft on disk; one full build took {full_build:.2f} s")
    print(summary)
    # Kills are drawn inside one build's duration, so most land before the process ends.
    assert landed >= KILLS // 2, f"too few kills landed inside a build: {summary}"
    assert inside_draft > 0, f"no kill landed while a draft was written: {summary}"

    after = _dosirak("build", str(iris_project), "-o", "json")
    assert after.returncode == 0, after.stderr
    built = json.loads(after.stdout)
    assert built["tag"] in _check_visible(bentos, checked)
    # The dead builders' drafts are gone (the next build removes those of dead processes).
    assert os.listdir(drafts) == [], f"leftover drafts: {os.listdir(drafts)} ({summary})"
    digests = {json.loads(_dosirak("get", tag, "-o", "json").stdout)["digest"]
               for tag in checked}
    assert digests == {built["digest"]}  # every visible bento is the same, whole build
    # A dead builder's service reader finishes its import on its own and exits (no reader of
    # its pipe is left): none is still running a while later.
    deadline = time.monotonic() + 10
    while (alive := [pid for pid in orphans if _running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive, f"service readers of killed builds still running: {alive}"


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] not in ("Z", "X")

