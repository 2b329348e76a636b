"""What the file system under a test's folder can do (shared by the store and hub tests)."""

from __future__ import annotations

import os
from pathlib import Path


def takes_o_direct(folder: Path) -> bool:
    """Whether files in ``folder`` can be opened with O_DIRECT (tmpfs-like systems refuse)."""
    probe = folder / ".o-direct-probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
    except OSError:
        return False
    os.close(fd)
    probe.unlink()
    return True
