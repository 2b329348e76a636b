"""Builds killed with SIGKILL at random moments leave no partial bento visible; concurrent builds
all land whole."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dosirak
from dosirak.store.manifest import hash_file

KILLS = 6
BUILD_FOREVER = """
import sys, dosirak
while True:
    dosirak.bentos.build(sys.argv[1])
    print("built", flush=True)
"""


def _assert_complete(bento: dosirak.bentos.Bento) -> None:
    on_disk = sorted(p.relative_to(bento.path).as_posix()
                     for p in bento.path.rglob("*") if p.is_file())
    manifest = bento.info["manifest"]
    assert on_disk == sorted([*manifest, "bento.yaml"]), bento.tag
    for relative, entry in manifest.items():
        assert hash_file(bento.path / relative) == (entry["size"], entry["sha256"]), relative


def test_sigkill_during_build_leaves_no_partial_bento(iris_project: Path,
                                                      dosirak_home: Path) -> None:
    # Enough bytes that a build takes a while, so kills land inside builds, not between them.
    data = iris_project / "data"
    data.mkdir()
    for index in range(200):
        (data / f"part{index}.bin").write_bytes(os.urandom(20_000))
    (iris_project / "bentofile.yaml").write_text(
        (iris_project / "bentofile.yaml").read_text().replace('  - "*.py"', '  - "*.py"\n'
                                                                           '  - "data/"'))
    rng = random.Random(12)
    drafts_left = 0
    for _ in range(KILLS):
        child = subprocess.Popen([sys.executable, "-c", BUILD_FOREVER, str(iris_project)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "built\n"  # imports done, one build complete
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        drafts_left += len(os.listdir(dosirak_home / "bentos" / ".tmp"))
        found = dosirak.bentos.list()
        # list() skips a directory without bento.yaml: compare with what is on disk.
        on_disk = os.listdir(dosirak_home / "bentos" / "iris_classifier")
        assert found and sorted(on_disk) == sorted(str(b.tag.version) for b in found)
        for bento in found:
            _assert_complete(bento)
    assert drafts_left > 0, "no kill landed inside a build: the test proved nothing"
    digests = {bento.digest for bento in dosirak.bentos.list()}
    after = dosirak.bentos.build(iris_project)
    _assert_complete(after)
    assert digests == {after.digest}  # every visible bento is the same, whole build
    assert os.listdir(dosirak_home / "bentos" / ".tmp") == []  # dead builders' drafts removed


def test_concurrent_builds(iris_project: Path) -> None:
    with ThreadPoolExecutor(4) as pool:
        built = list(pool.map(lambda _: dosirak.bentos.build(iris_project), range(8)))
    assert len({b.tag for b in built}) == 8 and len({b.digest for b in built}) == 1
    assert sorted(b.tag for b in dosirak.bentos.list()) == sorted(b.tag for b in built)
    for bento in built:
        _assert_complete(bento)
