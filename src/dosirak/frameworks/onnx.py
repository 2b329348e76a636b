"""ONNX models, run with ONNX Runtime.

    >>> dosirak.onnx.save_model("clf", onnx_model)          # an onnx.ModelProto
    >>> dosirak.onnx.save_model("clf", "exported/clf.onnx") # or a .onnx file
    >>> session = dosirak.onnx.load_model("clf:latest")     # an onnxruntime.InferenceSession
    >>> session.run(None, {"input": x})

The model is checked with ``onnx.checker`` before it is stored, and stored as a single ``.onnx``
file (protobuf, no pickle); models over protobuf's 2 GiB limit keep their weights in an external
data file beside it. Loading gives an ``InferenceSession`` on the CPU unless other ONNX Runtime
``providers`` are asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dosirak.exceptions import InvalidArgument, NotFound
from dosirak.faces import module_getattr
from dosirak.frameworks import get_model, learn_input, loads_model, versions_of
from dosirak.input_spec import input_spec_from_shape
from dosirak.models import Model, require, save
from dosirak.tag import Tag

MODULE_NAME = "dosirak.onnx"
MODEL_FILE = "saved_model.onnx"
EXTERNAL_DATA_FILE = "saved_model.onnx.data"
DEFAULT_PROVIDERS = ("CPUExecutionProvider",)
DEFAULT_SIGNATURES = {"run": {"batchable": True, "batch_dim": 0}}
PROTOBUF_LIMIT = 2**31 - 1


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
    """Save an ``onnx.ModelProto``, or the ``.onnx`` file at a path, into the model store.

    The options record the graph's ``inputs`` and ``outputs`` names, its ``opset`` and, for a
    graph of one input, ``input_spec``: its rank, fixed dimensions and element type, checked
    before each call (ONNX Runtime converts nothing: another dtype or shape is a 400), and the
    form of a single output's answer. ``input_sample`` may add a DataFrame's columns.
    """
    onnx = require("onnx", "onnx")
    if isinstance(model, (str, os.PathLike)):
        if not Path(model).is_file():
            raise NotFound(f"no ONNX file at {os.fspath(model)!r}: pass an onnx.ModelProto or "
                           "the path of an existing .onnx file")
        model = onnx.load(os.fspath(model))  # external data beside the file is read in too
    if not isinstance(model, onnx.ModelProto):
        raise InvalidArgument(f"dosirak.onnx saves onnx.ModelProto objects or .onnx file paths, "
                              f"got {type(model).__name__}")
    large = model.ByteSize() > PROTOBUF_LIMIT
    learned = learn_input(lambda: _input_of(model.graph, onnx), input_sample, lambda methods: {},
                       signatures, DEFAULT_SIGNATURES)

    def write(directory: Path) -> dict[str, Any]:
        path = str(directory / MODEL_FILE)
        onnx.save_model(model, path, save_as_external_data=large, location=EXTERNAL_DATA_FILE)
        try:
            onnx.checker.check_model(path)  # from the file, so models over 2 GiB are checked too
        except (onnx.checker.ValidationError, ValueError) as error:
            raise InvalidArgument(f"the ONNX model is not valid ({error}); fix the export "
                                  "before saving it") from error
        return {
            "inputs": [value.name for value in model.graph.input],
            "outputs": [value.name for value in model.graph.output],
            "opset": {entry.domain or "ai.onnx": entry.version for entry in model.opset_import},
            **learned,
        }

    return save(
        name, module=MODULE_NAME, write=write, default_signatures=DEFAULT_SIGNATURES,
        labels=labels, metadata=metadata, custom_objects=custom_objects, signatures=signatures,
        framework_versions=versions_of("onnx", "onnxruntime"),
    )


@loads_model
def load_model(
    tag: Tag | str | Model,
    *,
    providers: list[Any] | None = None,
    session_options: Any = None,
) -> Any:
    """An ``onnxruntime.InferenceSession`` for the model (``CPUExecutionProvider`` by default)."""
    model = get_model(MODULE_NAME, tag)
    ort = require("onnxruntime", "onnx")
    return ort.InferenceSession(
        str(model.path / MODEL_FILE), sess_options=session_options,
        providers=list(providers or DEFAULT_PROVIDERS),
    )


def get(tag: Tag | str | Model) -> Model:
    """The stored model, checked to be an ONNX one."""
    return get_model(MODULE_NAME, tag)


def _input_of(graph: Any, onnx: Any) -> dict[str, Any]:
    """What a one-input graph takes (shape and element type), and the form of the answer of a
    one-output graph; ``{}`` for other graphs."""
    if len(graph.input) != 1 or not graph.input[0].type.HasField("tensor_type"):
        return {}
    spec = input_spec_from_shape(*_tensor_form(graph.input[0].type.tensor_type, onnx))
    if len(graph.output) == 1 and graph.output[0].type.HasField("tensor_type"):
        dims, dtype = _tensor_form(graph.output[0].type.tensor_type, onnx)
        if dims and all(isinstance(dim, int) for dim in dims[1:]):
            spec["outputs"] = {"run": {"dtype": dtype.str, "shape": [-1, *dims[1:]]}}
    return spec


def _tensor_form(tensor: Any, onnx: Any) -> tuple[list[int | None], Any]:
    """A tensor type's dimensions (None where not fixed) and numpy dtype."""
    dims = [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor.shape.dim]
    return dims, onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)


def runnable_method(loaded: Any, method_name: str) -> Callable[..., Any] | None:
    """The runner's ``run``: the graph's inputs as arrays, in order (or by name).

    ``run(x)`` feeds the first input; ``run(a, b)`` feeds inputs in graph order;
    ``run(input_name=x)`` feeds by name. One output comes back as an array, several as a list.
    """
    if method_name != "run":
        return getattr(loaded, method_name, None)  # the runner says when it is missing
    input_names = [value.name for value in loaded.get_inputs()]

    def run(*args: Any, **kwargs: Any) -> Any:
        if len(args) > len(input_names):
            raise InvalidArgument(f"the ONNX model takes {len(input_names)} inputs "
                                  f"({', '.join(input_names)}), got {len(args)} arrays")
        feed = dict(zip(input_names, args, strict=False))
        feed.update(kwargs)
        results = loaded.run(None, feed)
        return results[0] if len(results) == 1 else tuple(results)  # a tuple: split per output

    return run


# OnnxModelArtifact at BentoML 0.x's import path, made by dosirak.legacy (dosirak.faces)
__getattr__ = module_getattr(__name__)
