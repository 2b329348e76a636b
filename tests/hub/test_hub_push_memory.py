"""The push client's memory is bounded by the chunk size, not by the model's size."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import DOSIRAK, save_iris, use_home
from dosirak.hub.hub import DEFAULT_CHUNK_SIZE

MIB = 1 << 20


# wait4's ru_maxrss counts what a child held before its exec too, and a child forked from
# pytest starts as big as pytest: a small launcher process forks the CLI instead and reports
# its peak.
_LAUNCHER = """
import os, sys
pid = os.spawnv(os.P_NOWAIT, sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024)
"""


def _push_peak(tag: str, env: dict[str, str]) -> int:
    """Peak RSS (bytes) of a `dosirak models push` process."""
    run = subprocess.run([sys.executable, "-c", _LAUNCHER, DOSIRAK, "models", "push", tag],
                         env=env, capture_output=True, text=True, timeout=300)
    code, peak = run.stdout.split()[-2:]
    assert code == "0", run.stderr[-2000:]
    return int(peak)


def test_push_of_many_chunks_keeps_client_memory_bounded(start_hub, tmp_path, monkeypatch):
    """A push holds two chunk buffers (one sent, one read ahead) however many chunks the model
    has: its peak RSS stays within 2 chunks + 24 MiB of a push of a one-chunk model (the same
    imports, the same hub). Before, every chunk was a fresh bytes object (joined from pieces,
    then copied again), and the freed blocks piled up: 17 chunks took it from 36 to 178 MiB
    (now 53)."""
    hub = start_hub()  # the default chunk size, the one users get
    home = use_home(monkeypatch, tmp_path / "alice")
    small = save_iris("small_clf")  # one chunk
    chunks = 16
    big = save_iris("big_clf", extra_bytes=chunks * DEFAULT_CHUNK_SIZE)
    env = {**os.environ, "DOSIRAK_HOME": str(home), "DOSIRAK_HUB_URL": hub.url,
           "DOSIRAK_HUB_TOKEN": hub.admin_token}
    idle = _push_peak(str(small.tag), env)
    peak = _push_peak(str(big.tag), env)
    bound = 2 * DEFAULT_CHUNK_SIZE + 24 * MIB
    assert peak - idle < bound, (
        f"pushing {chunks + 1} chunks of {DEFAULT_CHUNK_SIZE // MIB} MiB took the client to "
        f"{peak / MIB:.0f} MiB, {(peak - idle) / MIB:.0f} MiB above a one-chunk push "
        f"({idle / MIB:.0f} MiB); the bound is {bound / MIB:.0f} MiB")
    with hub.client() as client:  # and it arrived whole
        assert client.version("model", str(big.tag))["size"] > chunks * DEFAULT_CHUNK_SIZE
