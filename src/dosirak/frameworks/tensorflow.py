"""TensorFlow modules (``tf.Module`` with ``tf.function`` methods), stored as a SavedModel.

    >>> class Affine(tf.Module):
    ...     @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    ...     def __call__(self, x): ...
    >>> dosirak.tensorflow.save_model("affine", Affine())
    >>> module = dosirak.tensorflow.load_model("affine:latest")
    >>> module(x)

A SavedModel holds graphs and variables, not Python code or pickle: the loaded object has the
module's traced ``tf.function`` methods and variables, not its Python class. A method is saved
only if it has an ``input_signature`` or was called (traced) before saving. When ``__call__`` has
an ``input_signature`` it is also exported as the ``serving_default`` signature, so TensorFlow
Serving can serve the same files. Keras models belong to ``dosirak.keras``.
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

MODULE_NAME = "dosirak.tensorflow"
MODEL_DIRECTORY = "saved_model"
DEFAULT_SIGNATURES = {"__call__": {"batchable": True, "batch_dim": 0}}


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
    """Save a ``tf.Module`` into the model store as a SavedModel directory.

    When ``__call__`` has an ``input_signature`` of one tensor, its shape goes into
    ``input_spec``, checked before each call (a 400 for another width); else ``input_sample``
    (a few rows) gives the shape and the dtype (a SavedModel runs only the dtypes it was traced
    with). The form of the answer is learned by calling the module on one row.
    """
    if type(model).__module__.split(".")[0] in ("keras", "tf_keras"):
        raise InvalidArgument(f"{type(model).__name__} is a Keras object: save it with "
                              "dosirak.keras.save_model, which keeps its Keras config")
    tf = require("tensorflow", "tensorflow")
    if not isinstance(model, tf.Module):
        raise InvalidArgument(
            f"dosirak.tensorflow saves tf.Module objects, got {type(model).__name__}; wrap "
            "your tf.function methods in a tf.Module subclass, or save other objects with "
            "dosirak.picklable_model"
        )
    serving = _serving_signatures(model, tf)
    declared = _input_of(model, tf)
    learned = learn_input(lambda: declared, input_sample, calls_of(model, runnable_method),
                       signatures, DEFAULT_SIGNATURES, exact_dtype=not declared)

    def write(directory: Path) -> dict[str, Any]:
        tf.saved_model.save(model, str(directory / MODEL_DIRECTORY), signatures=serving or None)
        return {"format": "saved_model", "serving_signatures": sorted(serving),
                **learned}

    return save(
        name, module=MODULE_NAME, write=write, default_signatures=DEFAULT_SIGNATURES,
        labels=labels, metadata=metadata, custom_objects=custom_objects, signatures=signatures,
        framework_versions=versions_of("tensorflow", "tensorflow-cpu"),
    )


@loads_model
def load_model(tag: Tag | str | Model, **kwargs: Any) -> Any:
    """Load the SavedModel back with ``tf.saved_model.load`` (keyword arguments go there)."""
    model = get_model(MODULE_NAME, tag)
    tf = require("tensorflow", "tensorflow")
    return tf.saved_model.load(str(model.path / MODEL_DIRECTORY), **kwargs)


def get(tag: Tag | str | Model) -> Model:
    """The stored model, checked to be a TensorFlow one."""
    return get_model(MODULE_NAME, tag)


def runnable_method(loaded: Any, method_name: str) -> Callable[..., Any] | None:
    """The runner's call: numpy (or tensors) in, numpy arrays out."""
    tf = require("tensorflow", "tensorflow")
    function = loaded if method_name == "__call__" else getattr(loaded, method_name, None)
    if not callable(function):
        return function  # the runner says which method is missing

    def to_numpy(value: Any) -> Any:
        return value.numpy() if isinstance(value, tf.Tensor) else value

    def run(*args: Any, **kwargs: Any) -> Any:
        return tf.nest.map_structure(to_numpy, function(*args, **kwargs))

    return run


def _input_of(model: Any, tf: Any) -> dict[str, Any]:
    """The shape of ``__call__``'s one-tensor input signature (TensorFlow casts the dtype)."""
    call = model.__call__ if callable(model) else None
    signature: Any = getattr(call, "input_signature", None) or ()
    if len(signature) != 1 or not isinstance(signature[0], tf.TensorSpec) \
            or signature[0].shape.rank is None:
        return {}
    return input_spec_from_shape(signature[0].shape.as_list())


def _serving_signatures(model: Any, tf: Any) -> dict[str, Any]:
    """``serving_default`` from ``__call__`` when its input signature is fixed."""
    call = model.__call__ if callable(model) else None
    if isinstance(call, tf.types.experimental.PolymorphicFunction) and call.input_signature:
        return {"serving_default": call.get_concrete_function()}
    return {}


# TensorflowSavedModelArtifact at BentoML 0.x's import path, made by dosirak.legacy (dosirak.faces)
__getattr__ = module_getattr(__name__)
