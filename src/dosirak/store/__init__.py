"""The local stores: where models (and later bentos) live on disk.

The home directory is ``$DOSIRAK_HOME`` (default ``~/dosirak``), read on every call so that tests
and tools can point a process at another home.
"""

from __future__ import annotations

import os
from pathlib import Path

from dosirak.store.manifest import INFO_FILE
from dosirak.store.versioned_store import VersionedStore


def home() -> Path:
    """The dosirak home directory."""
    return Path(os.environ.get("DOSIRAK_HOME") or Path.home() / "dosirak").expanduser()


def model_store() -> VersionedStore:
    """The model store under the current home."""
    return VersionedStore(home() / "models", INFO_FILE, kind="model")


__all__ = ["VersionedStore", "home", "model_store"]
