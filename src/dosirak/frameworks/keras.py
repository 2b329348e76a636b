"""Keras 3 models, stored as a native ``.keras`` file (config JSON + weights, no pickle).

    >>> dosirak.keras.save_model("mnist", model)
    >>> model = dosirak.keras.load_model("mnist:latest")
    >>> model.predict(x)

The ``.keras`` format is the same on every Keras backend (TensorFlow, JAX, PyTorch), so a model may
be loaded on another backend than the one it was saved on; the options record the saving backend.
Loading runs in Keras's ``safe_mode`` unless told otherwise, which refuses to deserialise Python
lambdas. Custom layers must be registered with ``keras.saving.register_keras_serializable`` or
passed in ``custom_objects`` (stored with the model and handed to Keras when it loads).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dosirak.exceptions import InvalidArgument
from dosirak.faces import module_getattr
from dosirak.frameworks import (
    calls_of,
    get_model,
    learn_input,
    loads_model,
    versions_of,
)
from dosirak.input_spec import input_spec_from_shape
from dosirak.models import Model, require, save
from dosirak.tag import Tag

MODULE_NAME = "dosirak.keras"
MODEL_FILE = "saved_model.keras"
DEFAULT_SIGNATURES = {"predict": {"batchable": True, "batch_dim": 0}}
# The distribution that backs each Keras backend, recorded in the model's context.
BACKEND_DISTRIBUTIONS = {"tensorflow": "tensorflow-cpu", "torch": "torch", "jax": "jax"}


def save_model(
    name: str,
    model: Any,
    *,
    labels: dict[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
    custom_objects: dict[str, Any] | None = None,
    signatures: dict[str, Any] | None = None,
    input_sample: Any = None,
) -> Model:
    """Save a built ``keras.Model`` into the model store as a ``.keras`` file.

    A model built on an ``Input`` of one tensor records its shape in ``input_spec``, checked
    before each call (a 400 for another width), and the form of its answer, learned from one
    row of zeros. ``input_sample`` (a few rows) stands in for a model built without ``Input``.
    """
    keras = require("keras", "keras")
    if not isinstance(model, keras.Model):
        raise InvalidArgument(
            f"dosirak.keras saves keras.Model objects, got {type(model).__name__}; "
            "save TensorFlow modules with dosirak.tensorflow and other objects with "
            "dosirak.picklable_model"
        )
    backend = keras.backend.backend()
    learned = learn_input(lambda: _input_of(model), input_sample,
                          calls_of(model, runnable_method), signatures, DEFAULT_SIGNATURES)

    def write(directory: Path) -> dict[str, Any]:
        model.save(directory / MODEL_FILE)
        return {"format": "keras", "backend": backend, "model_class": type(model).__name__,
                **learned}

    distributions = ["keras", BACKEND_DISTRIBUTIONS.get(backend, backend)]
    if backend == "tensorflow":
        distributions.append("tensorflow")
    return save(
        name, module=MODULE_NAME, write=write, default_signatures=DEFAULT_SIGNATURES,
        labels=labels, metadata=metadata, custom_objects=custom_objects, signatures=signatures,
        framework_versions=versions_of(*distributions),
    )


@loads_model
def load_model(tag: Tag | str | Model, **kwargs: Any) -> Any:
    """Load the model back with ``keras.saving.load_model``.

    Keyword arguments (``compile``, ``safe_mode``, ``custom_objects``) go to Keras; by default
    the custom objects saved with the model are passed as Keras ``custom_objects``.
    """
    model = get_model(MODULE_NAME, tag)
    keras = require("keras", "keras")
    if "custom_objects" not in kwargs and model.custom_objects:
        kwargs["custom_objects"] = model.custom_objects
    return keras.saving.load_model(model.path / MODEL_FILE, **kwargs)


def get(tag: Tag | str | Model) -> Model:
    """The stored model, checked to be a Keras one."""
    return get_model(MODULE_NAME, tag)


def _input_of(model: Any) -> dict[str, Any]:
    """The shape of a built model's one input (Keras converts dtypes itself)."""
    inputs = model.inputs  # AttributeError until the model is built: learn_input records none
    return input_spec_from_shape(tuple(inputs[0].shape)) if len(inputs) == 1 else {}


def runnable_method(loaded: Any, method_name: str) -> Callable[..., Any] | None:
    """The runner's call: ``predict`` without a progress bar; tensor results as numpy arrays."""
    keras = require("keras", "keras")
    function = loaded if method_name == "__call__" else getattr(loaded, method_name, None)
    if not callable(function):
        return function  # the runner says which method is missing

    def run(*args: Any, **kwargs: Any) -> Any:
        if method_name == "predict":
            kwargs.setdefault("verbose", 0)  # a progress bar per request would flood the logs
        result = function(*args, **kwargs)
        if keras.ops.is_tensor(result):
            return keras.ops.convert_to_numpy(result)
        return result

    return run


# KerasModelArtifact at BentoML 0.x's import path, made by dosirak.legacy (dosirak.faces)
__getattr__ = module_getattr(__name__)
