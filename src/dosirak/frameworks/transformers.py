"""Hugging Face Transformers pipelines, models, tokenizers and processors, via ``save_pretrained``.

    >>> classifier = transformers.pipeline("text-classification", model=model, tokenizer=tokenizer)
    >>> dosirak.transformers.save_model("sentiment", classifier)
    >>> dosirak.transformers.load_model("sentiment:latest")(["great movie", "dull plot"])
    >>> dosirak.transformers.save_model("bert", model)                # a model or a tokenizer alone

Everything is written by the object's own ``save_pretrained`` into the store: weights as
safetensors, configs and tokenizers as JSON (no pickle), and loaded from that local directory
only: nothing is downloaded, and ``trust_remote_code`` stays off unless asked for. A pipeline comes
back through ``transformers.pipeline(task, model=<stored directory>)``; other objects through
their class's ``from_pretrained``. Classes that are not part of Transformers (your own subclass)
are imported by module path at load, so their code must be importable there.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from dosirak.exceptions import InvalidArgument, MissingDependency
from dosirak.faces import module_getattr
from dosirak.frameworks import (
    calls_of,
    get_model,
    learn_input,
    loads_model,
    versions_of,
)
from dosirak.models import Model, require, save
from dosirak.tag import Tag

MODULE_NAME = "dosirak.transformers"
MODEL_DIRECTORY = "pretrained"
# A pipeline takes a list of inputs and returns one result per input: lists batch on axis 0.
PIPELINE_SIGNATURES = {"__call__": {"batchable": True, "batch_dim": 0}}


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
    """Save a pipeline, or any object with ``save_pretrained``, into the model store.

    The options record ``kind`` ("pipeline" or "pretrained"), the object's class and, for a
    pipeline, its ``task`` and its model's class. A pipeline's empty batch (``[]``) is a 400
    without calling it; ``input_sample`` (an array of a few rows, for models called with
    arrays) records their shape, checked before each call.
    """
    transformers = require("transformers", "transformers")
    if isinstance(model, transformers.Pipeline):
        if not model.task:
            raise InvalidArgument("this pipeline has no task: build it with "
                                  "transformers.pipeline(task, ...) so it can be rebuilt at load")
        options = {"kind": "pipeline", "task": model.task,
                   "pipeline_class": _class_path(type(model), transformers),
                   "model_class": _class_path(type(model.model), transformers)}
        defaults: dict[str, Any] = PIPELINE_SIGNATURES
    elif callable(getattr(model, "save_pretrained", None)) and callable(
            getattr(type(model), "from_pretrained", None)):
        options = {"kind": "pretrained", "class": _class_path(type(model), transformers)}
        defaults = _pretrained_signatures(model, transformers)
    else:
        raise InvalidArgument(
            f"dosirak.transformers saves pipelines and objects with save_pretrained/"
            f"from_pretrained (models, tokenizers, processors), got {type(model).__name__}; "
            "save other objects with dosirak.picklable_model"
        )

    if input_sample is not None:
        options.update(learn_input(dict, input_sample, calls_of(model), signatures, defaults))

    def write(directory: Path) -> dict[str, Any]:
        model.save_pretrained(str(directory / MODEL_DIRECTORY))
        return options

    return save(
        name, module=MODULE_NAME, write=write, default_signatures=defaults,
        labels=labels, metadata=metadata, custom_objects=custom_objects, signatures=signatures,
        framework_versions=versions_of("transformers", "tokenizers", "safetensors", "torch"),
    )


@loads_model
def load_model(tag: Tag | str | Model, **kwargs: Any) -> Any:
    """Load the pipeline or object back from the store's directory.

    Keyword arguments go to ``transformers.pipeline`` for a pipeline (``device``,
    ``batch_size`` ...) and to ``from_pretrained`` otherwise.
    """
    model = get_model(MODULE_NAME, tag)
    transformers = require("transformers", "transformers")
    directory = str(model.path / MODEL_DIRECTORY)
    options = model.info.options
    if options.get("kind") == "pipeline":
        kwargs.setdefault("trust_remote_code", False)
        return transformers.pipeline(
            task=options["task"], model=directory,
            pipeline_class=_resolve(options["pipeline_class"], transformers, model), **kwargs,
        )
    cls = _resolve(options["class"], transformers, model)
    kwargs.setdefault("local_files_only", True)
    return cls.from_pretrained(directory, **kwargs)


def get(tag: Tag | str | Model) -> Model:
    """The stored model, checked to be a Transformers one."""
    return get_model(MODULE_NAME, tag)


def _pretrained_signatures(model: Any, transformers: Any) -> dict[str, Any]:
    """Models and tokenizers are called, not batched: their inputs need padding to merge."""
    found: dict[str, Any] = {"__call__": {}}
    can_generate = getattr(model, "can_generate", None)
    if isinstance(model, transformers.PreTrainedModel) and callable(can_generate) \
            and can_generate():
        found["generate"] = {}
    return found


def _class_path(cls: type, transformers: Any) -> str:
    """A Transformers class by its public name (stable across releases), others by module path."""
    if getattr(transformers, cls.__name__, None) is cls:
        return cls.__name__
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve(path: str, transformers: Any, model: Model) -> Any:
    if ":" not in path:
        found = getattr(transformers, path, None)
        if found is None:
            raise MissingDependency(
                f"model {model.tag} needs transformers.{path}, which transformers "
                f"{transformers.__version__} does not have; install the version it was saved "
                "with (see its context.framework_versions)"
            )
        return found
    module_name, _, qualname = path.partition(":")
    try:
        found = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as error:
        raise MissingDependency(
            f"model {model.tag} is a {path} whose code cannot be imported ({error}); make "
            "that module importable (install it or add it to PYTHONPATH)"
        ) from error
    return found


# TransformersModelArtifact at BentoML 0.x's import path, made by dosirak.legacy (dosirak.faces)
__getattr__ = module_getattr(__name__)
