"""What a stored model takes as input, learned when it is saved and checked before each call.

    >>> spec = input_spec_of(fitted_estimator)       # n_features_in_, feature_names_in_
    >>> spec
    {'n_features': 4, 'feature_names': ['sepal_length', ...]}
    >>> input_check(spec, "predict", True)((np.zeros((2, 3)),))  # BadInput: 4 features

A model that is called with rows of the wrong width raises deep inside its framework, and the
server can only answer 500. The width is a property of the model, so it is recorded in
``model.yaml`` (``options.input_spec``) at save time and checked in the calling process before
the call is batched or sent to a worker: the client gets a 400 naming what the model expects,
and a batch is never poisoned by one caller's bad rows. ``outputs`` records, per method, the
dtype and trailing shape of an answer, so that an empty batch is answered without the model.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from dosirak.exceptions import BadInput, InvalidArgument


def input_spec_of(model: Any, methods: tuple[str, ...] = ()) -> dict[str, Any]:
    """The input spec of a fitted scikit-learn-style estimator (``{}`` when it states none).

    ``methods`` are probed with one row of zeros to learn the form of their answers; a method
    that cannot answer such a row is left out.
    """
    spec: dict[str, Any] = {}
    width = getattr(model, "n_features_in_", None)
    if isinstance(width, int) and not isinstance(width, bool):
        spec["n_features"] = width
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        spec["feature_names"] = [str(name) for name in names]
    if spec.get("n_features"):
        spec["outputs"] = _probe(model, methods, _zero_row(spec))
    return {key: value for key, value in spec.items() if value}


def input_spec_from_sample(sample: Any, model: Any = None,
                           methods: tuple[str, ...] = ()) -> dict[str, Any]:
    """The input spec of a model that takes rows like ``sample`` (an array or a DataFrame of
    at least one row); with ``model``, ``methods`` are probed with the sample's first row."""
    shape = getattr(sample, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] < 1:
        raise InvalidArgument(f"input_sample must be a 2-D array or DataFrame holding at least "
                              f"one row, got {type(sample).__name__} of shape {shape}")
    spec: dict[str, Any] = {"n_features": int(shape[1])}
    columns = getattr(sample, "columns", None)
    if columns is not None:
        spec["feature_names"] = [str(name) for name in columns]
    if model is not None:
        first = sample.iloc[:1] if columns is not None else sample[:1]
        spec["outputs"] = _probe(model, methods, first)
    return {key: value for key, value in spec.items() if value}


def _zero_row(spec: dict[str, Any]) -> Any:
    import numpy as np

    row = np.zeros((1, spec["n_features"]))
    if "feature_names" in spec:
        import pandas as pd

        return pd.DataFrame(row, columns=spec["feature_names"])
    return row


def _probe(model: Any, methods: tuple[str, ...], row: Any) -> dict[str, Any]:
    import numpy as np

    outputs = {}
    for name in methods:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                answer = np.asarray(getattr(model, name)(row))
        except Exception:  # any failure just means the form stays unknown
            continue
        if answer.ndim >= 1 and len(answer) == 1 and not answer.dtype.hasobject:
            outputs[name] = {"dtype": answer.dtype.str, "shape": [-1, *answer.shape[1:]]}
    return outputs


def input_check(spec: dict[str, Any], method: str, batchable: bool
                ) -> Callable[[tuple[Any, ...]], Any] | None:
    """A function that checks a call's first argument against ``spec`` (raising ``BadInput``),
    and returns the answer of an empty batch, or None to call the model; None when there is
    nothing to check."""
    width = spec.get("n_features")
    if not width:
        return None
    names = spec.get("feature_names")
    output = (spec.get("outputs") or {}).get(method) if batchable else None

    def check(args: tuple[Any, ...]) -> Any:
        value = args[0] if args else None
        shape = getattr(value, "shape", None)
        if shape is None:
            return None  # lists and other values: the model's own conversion decides
        if shape[:1] == (0,) and shape[1:] in ((), (0,), (width,)):  # "[]": an empty batch too
            return _empty(output)
        if len(shape) != 2 or shape[1] != width:
            raise _wrong_width(shape, width, names)
        if names is not None and hasattr(value, "columns"):
            _check_names(value.columns, names)
        return None

    return check


def _wrong_width(shape: tuple[int, ...], width: int, names: list[str] | None) -> BadInput:
    expected = f"rows of {width} features" + (f" ({', '.join(names)})" if names else "")
    return BadInput(f"the model takes {expected}, a 2-D input of shape (rows, {width}); it was "
                    f"given shape {tuple(shape)}",
                    [{"loc": ["body"], "msg": f"expected shape (rows, {width}), got "
                      f"{tuple(shape)}", "type": "shape_error"}])


def _check_names(columns: Any, names: list[str]) -> None:
    given = [str(column) for column in columns]
    if given != names:
        missing = [name for name in names if name not in given]
        detail = [{"loc": ["body", name], "msg": "column is missing", "type": "missing"}
                  for name in missing] or [{"loc": ["body"], "msg": f"columns {given}, "
                                            f"expected {names}", "type": "shape_error"}]
        raise BadInput(f"the model takes the columns {names} in this order; it was given "
                       f"{given}", detail)


def _empty(output: dict[str, Any] | None) -> Any:
    import numpy as np

    if output is None:  # models refuse zero rows, and the form of their answer is unknown
        raise BadInput("the body holds no rows; send at least one",
                       [{"loc": ["body"], "msg": "no rows", "type": "empty_batch"}])

    return np.empty((0, *output["shape"][1:]), dtype=np.dtype(output["dtype"]))
