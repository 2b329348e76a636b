"""Bentos: a service's code, the models it uses (by tag and digest) and its environment, built
from ``bentofile.yaml`` into the bento store under a tag ``name:version``.

    >>> import dosirak
    >>> bento = dosirak.bentos.build("examples/iris")
    >>> dosirak.bentos.get("iris_classifier:latest").digest
    >>> dosirak.bentos.list(), dosirak.bentos.delete(bento.tag)
    >>> dosirak.bentos.export_bento(bento.tag, "/tmp/"), dosirak.bentos.verify(bento.tag)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dosirak.bentos.build import build
from dosirak.bentos.store import Bento, delete, get, list

if TYPE_CHECKING:
    from dosirak.bentos.archive import export_bento, import_bento, verify

# Imported on first use: serving a bento (dosirak serve TAG, a container's start) reads it from
# the store and needs neither archives nor fsspec.
_ARCHIVE = ("export_bento", "import_bento", "verify")


def __getattr__(name: str) -> Any:
    if name in _ARCHIVE:
        from dosirak.bentos import archive

        return getattr(archive, name)
    raise AttributeError(f"module 'dosirak.bentos' has no attribute {name!r}")


__all__ = ["Bento", "build", "delete", "export_bento", "get", "import_bento", "list", "verify"]
