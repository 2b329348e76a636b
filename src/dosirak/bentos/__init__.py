"""Bentos: a service's code, the models it uses (by tag and digest) and its environment, built
from ``bentofile.yaml`` into the bento store under a tag ``name:version``.

    >>> import dosirak
    >>> bento = dosirak.bentos.build("examples/iris")
    >>> dosirak.bentos.get("iris_classifier:latest").digest
    >>> dosirak.bentos.list(), dosirak.bentos.delete(bento.tag)
    >>> dosirak.bentos.export_bento(bento.tag, "/tmp/"), dosirak.bentos.verify(bento.tag)
"""

from __future__ import annotations

from dosirak.bentos.archive import export_bento, import_bento, verify
from dosirak.bentos.build import build
from dosirak.bentos.store import Bento, delete, get, list

__all__ = ["Bento", "build", "delete", "export_bento", "get", "import_bento", "list", "verify"]
