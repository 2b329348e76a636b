"""``@svc.on_deployment`` hooks: once per deployment, however many API workers start.

``dosirak serve`` makes a private directory for the deployment before any worker starts and
names it in ``DOSIRAK_DEPLOYMENT_DIR``. Each worker, before it starts its runners, takes an
exclusive lock on a file there: the first to get it runs the hooks and leaves a marker; the
others wait on the lock (so no worker serves before the hooks are done) and then see the
marker. A worker restarted later sees it too. A hook that fails leaves no marker: the worker
fails to start with its error and the next one tries again. ``--reload`` removes the marker, so
the hooks run again for the new sources. Without the variable (a service served in-process,
a test server), the hooks simply run.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dosirak.services import Service

#: Set by ``dosirak serve`` for its workers (the supervisor imports this module: keep it light).
DEPLOYMENT_DIR_ENV = "DOSIRAK_DEPLOYMENT_DIR"
MARKER = "on_deployment.done"
_LOCK = "on_deployment.lock"


async def run_deployment_hooks_once(svc: Service) -> None:
    """Run ``svc``'s ``on_deployment`` hooks unless this deployment already ran them."""
    if not svc._deployment_hooks:
        return
    directory = os.environ.get(DEPLOYMENT_DIR_ENV)
    if not directory:
        await svc.run_deployment_hooks()
        return
    import asyncio  # here: `dosirak serve` imports this module before its first worker starts

    loop = asyncio.get_running_loop()
    # Waiting for another worker's hooks must not hold this worker's loop.
    fd = await loop.run_in_executor(None, _lock, Path(directory) / _LOCK)
    try:
        marker = Path(directory) / MARKER
        if not marker.exists():
            await svc.run_deployment_hooks()
            marker.write_text(f"{os.getpid()}\n")
    finally:
        os.close(fd)  # releases the lock


def _lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd
