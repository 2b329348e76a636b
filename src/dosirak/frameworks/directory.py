"""Models made with ``dosirak.models.create``: a directory of files the service reads itself.

BentoML 1.2 saves models without an adapter: ``with bentoml.models.create("name") as ref:``
gives a directory to write into, and the service loads from ``bentoml.models.get(...).path``
with whatever library wrote the files. ``load_model`` gives that path back.
"""

from __future__ import annotations

from pathlib import Path

from dosirak.frameworks import get_model, loads_model
from dosirak.models import DIRECTORY_MODULE as MODULE_NAME
from dosirak.models import Model
from dosirak.tag import Tag


@loads_model
def load_model(tag: Tag | str | Model) -> Path:
    """The model's directory (its files are the model)."""
    return get_model(MODULE_NAME, tag).path


def get(tag: Tag | str | Model) -> Model:
    """The stored model, checked to be one made with ``dosirak.models.create``."""
    return get_model(MODULE_NAME, tag)
