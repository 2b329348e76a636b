"""Any Python object that cloudpickle can serialise (custom predictors, plain functions).

Pickle runs code when it loads: only load models you or your team saved. Files that arrive over
the network are never unpickled by dosirak's servers.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import cloudpickle

from dosirak.frameworks import calls_of, get_model, learn_input, loads_model, versions_of
from dosirak.models import Model, save
from dosirak.tag import Tag

MODULE_NAME = "dosirak.picklable_model"
MODEL_FILE = "saved_model.pkl"


def save_model(
    name: str,
    model: Any,
    *,
    labels: dict[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
    custom_objects: dict[str, Any] | None = None,
    signatures: dict[str, Any] | None = None,
    input_sample: Any = None,
    external_modules: list[ModuleType] | None = None,
) -> Model:
    """Save any picklable object; its default signature is ``__call__``, not batchable.

    ``input_sample`` (a few rows) records their shape in ``input_spec``, checked before each
    call (a 400 for another width), and what calling the object on one of them shows.
    """
    learned = learn_input(dict, input_sample, calls_of(model), signatures, {"__call__": {}})

    def write(directory: Path) -> dict[str, Any]:
        with open(directory / MODEL_FILE, "wb") as stream:
            cloudpickle.dump(model, stream, protocol=5)
        return learned

    return save(
        name, module=MODULE_NAME, write=write, default_signatures={"__call__": {}},
        labels=labels, metadata=metadata, custom_objects=custom_objects, signatures=signatures,
        framework_versions=versions_of("cloudpickle"),
        external_modules=external_modules,
    )


@loads_model
def load_model(tag: Tag | str | Model) -> Any:
    """Load the object back."""
    model = get_model(MODULE_NAME, tag)
    with open(model.path / MODEL_FILE, "rb") as stream:
        return cloudpickle.load(stream)


def get(tag: Tag | str | Model) -> Model:
    """The stored model, checked to be a picklable one."""
    return get_model(MODULE_NAME, tag)
