"""The bento store: ``$DOSIRAK_HOME/bentos/<name>/<version>/`` on the same ``VersionedStore`` as
models (atomic, crash-safe, concurrent-safe), with ``bento.yaml`` as each version's info file.

    >>> bento = dosirak.bentos.get("iris_classifier:latest")
    >>> bento.tag, bento.digest, bento.path
"""

from __future__ import annotations

import builtins
import contextlib
import datetime
import errno
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dosirak.exceptions import BentoNotFound, InUse, NotFound
from dosirak.store import BENTO_INFO_FILE, VersionedStore, home
from dosirak.store.versioned_store import creation_time
from dosirak.tag import Tag

BENTO_FILE = BENTO_INFO_FILE


class _BentoStore(VersionedStore):
    def not_found(self, tag: Tag | str) -> BentoNotFound:
        return BentoNotFound(f"no bento {str(tag)!r} in {self.root}; see what is there with "
                             "`dosirak list`, or build it with `dosirak build`")


def bento_store() -> VersionedStore:
    """The bento store under the current home."""
    return _BentoStore(home() / "bentos", BENTO_FILE, kind="bento")


@dataclass(frozen=True)
class Bento:
    """A bento in the store: its tag, its directory and what its ``bento.yaml`` says."""

    tag: Tag
    path: Path
    info: dict[str, Any] = field(repr=False)

    @property
    def digest(self) -> str:
        """sha256 of the sources, the models' digests and the environment (not the version)."""
        return str(self.info["digest"])

    @property
    def service(self) -> str:
        return str(self.info["service"])

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.info.get("labels") or {})

    @property
    def models(self) -> builtins.list[dict[str, Any]]:
        """The models the bento uses: ``tag``, ``digest`` and ``alias`` of each."""
        return builtins.list(self.info.get("models") or [])

    @property
    def size(self) -> int:
        """Bytes of the bento's own files (its models are counted in the model store)."""
        return int(self.info.get("size", 0))

    @property
    def creation_time(self) -> datetime.datetime:
        return creation_time(self.info)

    def summary(self) -> dict[str, Any]:
        """The fields ``dosirak list`` shows."""
        return {"tag": str(self.tag), "service": self.service, "size": self.size,
                "models": [m["tag"] for m in self.models], "labels": self.labels,
                "creation_time": self.creation_time.isoformat()}


def bento_tag(tag: Tag | str) -> Tag:
    """A bento tag, read case-insensitively (as BentoML 1.x, which lowercases tags): the 0.x
    service ``IrisClassifier:latest`` names the bento ``irisclassifier``."""
    return Tag.parse(tag.lower() if isinstance(tag, str) else tag)


def get(tag: Tag | str) -> Bento:
    """The stored bento for ``name``, ``name:latest``, ``name:version`` or a version prefix."""
    store = bento_store()
    full = store.resolve(bento_tag(tag))
    return Bento(full, store.path(full), store.read_info(full))


def list(name: str | None = None) -> builtins.list[Bento]:  # BentoML's name
    """Every stored bento (or every version of one name), newest first."""
    store = bento_store()
    found = []
    for tag in store.iter_tags(name):
        try:
            found.append(Bento(tag, store.path(tag), store.read_info(tag)))
        except NotFound:  # deleted while listing
            continue
    found.sort(key=lambda b: (b.creation_time, b.tag.version), reverse=True)
    return found


def delete(tag: Tag | str, *, force: bool = False) -> Tag:
    """Delete one bento version (``name:latest`` deletes the newest); returns its full tag.

    Its models stay in the model store: other bentos may use them. A bento being served, run
    or batched (a process holds its lease) is kept (``InUse``) unless ``force``.
    """
    store = bento_store()
    full = store.resolve(bento_tag(tag))
    with _lease_file(full) as fd:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if force:
                return _delete(store, full)
            raise InUse(f"bento {full} is in use: a `dosirak serve`, `run` or `batch` of it is "
                        "running; stop it first, or pass force=True (CLI: --force) to delete it "
                        "anyway (a running server keeps serving; its restarts fail)") from None
        return _delete(store, full)


def _delete(store: VersionedStore, tag: Tag) -> Tag:
    deleted = store.delete(tag)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_lease_path(tag))  # while locked: a holder still waiting finds the bento gone
    return deleted


@contextlib.contextmanager
def lease(tag: Tag | str) -> Iterator[Bento]:
    """Hold bento ``tag`` while it is served, run or batched: ``delete`` refuses it meanwhile.

    A shared ``flock`` on a file beside the store: any number of holders, released by the
    kernel when the holder exits, however it exits (no stale leases after a kill).
    """
    bento = get(tag)
    try:
        fd = _open_lease(bento.tag)
    except OSError as error:
        if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        # A store this process cannot write (a read-only image, another user's home): nobody
        # deletes from it through this process either, and serving must not fail for it.
        yield bento
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield get(bento.tag)  # deleted before the lease was taken: BentoNotFound
    finally:
        os.close(fd)


def hold(tag: Tag | str) -> Bento:
    """Take the lease of bento ``tag`` for the rest of this process's life (``dosirak serve``
    holds its bento until it exits)."""
    held = lease(tag)
    bento = held.__enter__()
    _HELD.append(held)
    return bento


_HELD: builtins.list[Any] = []  # the leases a process keeps until it exits
_LEASES = ".leases"


def _lease_path(tag: Tag) -> Path:
    return bento_store().root / _LEASES / f"{tag.name}:{tag.version}"


def _open_lease(tag: Tag) -> int:
    path = _lease_path(tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


@contextlib.contextmanager
def _lease_file(tag: Tag) -> Iterator[int]:
    fd = _open_lease(tag)
    try:
        yield fd
    finally:
        os.close(fd)
