"""PyTorch modules: TorchScript archives, or whole ``nn.Module`` objects saved with ``torch.save``.

    >>> dosirak.pytorch.save_model("mnist", net)                      # nn.Module (pickle)
    >>> dosirak.pytorch.save_model("mnist", torch.jit.script(net))    # TorchScript (no pickle)
    >>> net = dosirak.pytorch.load_model("mnist:latest")
    >>> net(torch.from_numpy(x))

A TorchScript module is stored with ``torch.jit.save`` and loaded with ``torch.jit.load``: its code
is TorchScript, not Python, so loading runs no arbitrary Python. A plain ``nn.Module`` is stored
whole with ``torch.save``, which pickles it: loading it needs ``weights_only=False``, runs pickle
(only load models you or your team saved) and needs the module's class importable under the same
module path as when it was saved.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

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

MODULE_NAME = "dosirak.pytorch"
MODEL_FILE = "saved_model.pt"
# A module maps a batch of rows to a batch of rows, so batching along axis 0 is the safe default.
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
    """Save a ``torch.nn.Module`` or a TorchScript module into the model store.

    The options record ``torchscript`` (True for ``torch.jit`` modules) and the model's class.
    A module does not say what it takes: ``input_sample`` (a few rows, an array or a tensor)
    records its shape and dtype in ``input_spec``, checked before each call (torch converts
    neither: another width or dtype is a 400), and, for a module in eval mode, the form of its
    answer and whether it raises on NaN, learned by calling it on the sample's first row.
    """
    torch = require("torch", "pytorch")
    if not isinstance(model, torch.nn.Module):
        raise InvalidArgument(
            f"dosirak.pytorch saves torch.nn.Module objects, got {type(model).__name__}; "
            "save other objects with dosirak.picklable_model"
        )
    torchscript = isinstance(model, torch.jit.ScriptModule)
    model_class = f"{type(model).__module__}.{type(model).__qualname__}"
    if isinstance(input_sample, torch.Tensor):
        input_sample = input_sample.detach().cpu().numpy()
    # A module in training mode is not called: a batch norm would learn from the probe.
    calls = calls_of(model, runnable_method) if not model.training else (lambda methods: {})
    learned = learn_input(dict, input_sample, calls, signatures, DEFAULT_SIGNATURES,
                       exact_dtype=True)

    def write(directory: Path) -> dict[str, Any]:
        if torchscript:
            torch.jit.save(model, str(directory / MODEL_FILE))
        else:
            torch.save(model, directory / MODEL_FILE)
        return {"torchscript": torchscript, "model_class": model_class,
                **learned}

    return save(
        name, module=MODULE_NAME, write=write, default_signatures=DEFAULT_SIGNATURES,
        labels=labels, metadata=metadata, custom_objects=custom_objects, signatures=signatures,
        framework_versions=versions_of("torch"),
    )


@loads_model
def load_model(tag: Tag | str | Model, *, device: str = "cpu") -> Any:
    """Load the module back onto ``device`` (``"cpu"``, ``"cuda:0"`` ...), in the mode it was saved.

    A plain ``nn.Module`` is unpickled (``weights_only=False``): see the module docstring.
    """
    model = get_model(MODULE_NAME, tag)
    torch = require("torch", "pytorch")
    path = model.path / MODEL_FILE
    if model.info.options.get("torchscript"):
        return torch.jit.load(str(path), map_location=device)
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except (ModuleNotFoundError, AttributeError) as error:
        # Pickle stores the class by reference: the code that defines it must be importable.
        model_class = model.info.options.get("model_class", "its class")
        raise MissingDependency(
            f"model {model.tag} is a pickled {model_class} whose code cannot be imported "
            f"({error}); make the module that defines it importable (install it or add it to "
            "PYTHONPATH), or save the model as TorchScript (torch.jit.script) instead"
        ) from error


def get(tag: Tag | str | Model) -> Model:
    """The stored model, checked to be a PyTorch one."""
    return get_model(MODULE_NAME, tag)


def runnable_method(loaded: Any, method_name: str) -> Callable[..., Any] | None:
    """The runner's call: numpy in, numpy out, without autograd.

    Arguments that are numpy arrays become tensors on the module's device; tensor results come
    back as numpy arrays (tuples, lists and dicts of tensors too).
    """
    torch = require("torch", "pytorch")
    function = loaded if method_name == "__call__" else getattr(loaded, method_name, None)
    if not callable(function):
        return function  # the runner says which method is missing
    device = _device_of(loaded, torch)

    def run(*args: Any, **kwargs: Any) -> Any:
        args = tuple(_to_tensor(value, torch, device) for value in args)
        kwargs = {key: _to_tensor(value, torch, device) for key, value in kwargs.items()}
        with torch.inference_mode():
            return _to_numpy(function(*args, **kwargs), torch)

    return run


def _device_of(module: Any, torch: Any) -> Any:
    for parameter in module.parameters():
        return parameter.device
    return torch.device("cpu")


def _to_tensor(value: Any, torch: Any, device: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.as_tensor(value, device=device)
    return value


def _to_numpy(value: Any, torch: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple of tensors
        return type(value)(*(_to_numpy(item, torch) for item in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_to_numpy(item, torch) for item in value)
    if isinstance(value, dict):
        return {key: _to_numpy(item, torch) for key, item in value.items()}
    return value


# PytorchModelArtifact at BentoML 0.x's import path, made by dosirak.legacy (dosirak.faces)
__getattr__ = module_getattr(__name__)
