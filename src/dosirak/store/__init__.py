"""The local stores: where models and bentos live on disk.

The home directory is ``$DOSIRAK_HOME`` (default ``~/dosirak``), read on every call so that tests
and tools can point a process at another home.
"""

from __future__ import annotations

import os
from pathlib import Path

from dosirak.exceptions import NotFound
from dosirak.store.manifest import INFO_FILE
from dosirak.store.versioned_store import VersionedStore
from dosirak.tag import Tag


def home() -> Path:
    """The dosirak home directory."""
    return Path(os.environ.get("DOSIRAK_HOME") or Path.home() / "dosirak").expanduser()


# Each bento's info file; its `models:` list ({tag, digest} each) names the models it uses.
BENTO_INFO_FILE = "bento.yaml"


def model_store() -> VersionedStore:
    """The model store under the current home."""
    return VersionedStore(home() / "models", INFO_FILE, kind="model")


def model_users(tag: Tag) -> list[Tag]:
    """The stored bentos that use model ``tag`` (a full tag): bentos refer to the models of the
    model store rather than copying them, so deleting one would break them."""
    bentos = VersionedStore(home() / "bentos", BENTO_INFO_FILE, kind="bento")
    wanted = str(tag)
    users = []
    for bento in bentos.iter_tags():
        try:
            models = bentos.read_info(bento).get("models") or []
        except (NotFound, OSError, ValueError):  # deleted meanwhile, or unreadable: not a user
            continue
        if any(isinstance(m, dict) and m.get("tag") == wanted for m in models):
            users.append(bento)
    return users


__all__ = ["BENTO_INFO_FILE", "VersionedStore", "home", "model_store", "model_users"]
