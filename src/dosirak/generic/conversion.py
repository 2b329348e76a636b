"""What a generic endpoint hands the model, and what it makes of the model's answer.

The seed's service turned every input into a table and every answer into the configured output
type, with one branch per framework. Here the framework only decides one thing: whether the model
reads tables (scikit-learn, XGBoost, LightGBM and plain Python objects keep a DataFrame's column
names), tensors (PyTorch, TensorFlow, Keras and ONNX get a numpy array, floats as float32 unless
the endpoint names a ``dtype``) or plain values (a Transformers pipeline gets a JSON body as a
list of texts or objects). Calling the model is the runner's job, the same for every framework.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dosirak.exceptions import BadInput, InvalidArgument
from dosirak.io.base import InvalidOutput, field_error
from dosirak.io.encoding import to_jsonable

#: Adapters whose models compute on tensors: they get numpy arrays, never DataFrames.
TENSOR_FRAMEWORKS = frozenset({"dosirak.pytorch", "dosirak.tensorflow", "dosirak.keras",
                               "dosirak.onnx"})
#: Adapters whose models read Python values (texts, objects of fields), neither tables nor
#: tensors: a JSON body reaches them as a list of inputs.
VALUE_FRAMEWORKS = frozenset({"dosirak.transformers"})
#: Inputs that are one item (not rows): a batchable method gets them as a batch of one.
SINGLE_ITEM_INPUTS = frozenset({"Text", "Image"})


def input_converter(input_type: str, framework: str, dtype: str | None,
                    batchable: bool) -> Callable[[Any], Any]:
    """A function from the API's parsed input to the model method's argument."""
    tensors = framework in TENSOR_FRAMEWORKS
    cast = np.dtype(dtype) if dtype is not None else None

    def to_array(value: Any) -> np.ndarray:
        array = value.to_numpy() if hasattr(value, "to_numpy") else np.asarray(value)
        if cast is not None:
            return _cast(array, cast)
        if tensors and array.dtype == np.float64:
            return array.astype(np.float32)  # tensor models hold float32 weights
        return array

    def table(value: Any) -> Any:
        return to_array(value) if tensors or cast is not None else value

    if input_type == "NumpyNdarray":
        return to_array
    if input_type == "PandasDataFrame":
        return table
    if input_type == "PandasSeries":
        # The seed: a Series is one row of features, named by its index.
        return lambda series: table(series.to_frame().T.reset_index(drop=True))
    if input_type == "JSON":
        if framework in VALUE_FRAMEWORKS:
            return json_inputs
        return lambda value: table(json_table(value))
    if input_type == "Image":
        pixels = cast if cast is not None else np.dtype(np.float32)

        def image(value: Any) -> Any:
            if tensors or cast is not None:
                # A batch of one image, (1, height, width[, channels]), in a writable copy.
                return np.array(value, dtype=pixels)[np.newaxis]
            return [value] if batchable else value
        return image
    if input_type == "Text":
        return (lambda text: [text]) if batchable else (lambda text: text)
    raise InvalidArgument(f"unknown input type {input_type!r}")


def json_table(value: Any) -> Any:
    """A JSON body as model input: an object is one row, a list of objects is rows, a list of
    numbers (nested) is an array."""
    import pandas as pd

    if isinstance(value, dict):
        return pd.DataFrame([value])
    if isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
        return pd.DataFrame(value)
    if isinstance(value, list):
        array = np.asarray(value) if value else np.empty((0,))
        if array.dtype.hasobject:
            raise BadInput("expected an object of features, a list of such objects, or nested "
                           "lists of numbers", [field_error(["body"], "mixed or nested "
                                                            "values", "type_error")])
        return array
    raise BadInput("expected a JSON object of features ({\"a\": 1.0}), a list of such objects, "
                   "or nested lists of numbers",
                   [field_error(["body"], f"got a JSON {type(value).__name__}", "type_error")])


def json_inputs(value: Any) -> list[Any]:
    """A JSON body as a list of inputs for a model of Python values (a Transformers pipeline):
    a string or an object is one input, a list of strings or of objects is several."""
    if isinstance(value, (str, dict)):
        return [value]
    if isinstance(value, list) and value and (all(isinstance(item, str) for item in value)
                                              or all(isinstance(item, dict) for item in value)):
        return value
    if isinstance(value, list):
        got = "an empty list" if not value else "a list not all of texts or all of objects"
    else:
        got = f"a JSON {type(value).__name__}"
    raise BadInput("expected a text (\"a movie\"), an object of fields, or a non-empty list of "
                   "texts or of objects", [field_error(["body"], f"got {got}", "type_error")])


def output_converter(output_type: str, single_item: bool) -> Callable[[Any], Any]:
    """A function from the model's answer to the value the output descriptor writes.

    ``single_item`` undoes the batch of one that ``input_converter`` made for Text and Image.
    """

    def unwrap(result: Any) -> Any:
        if single_item and isinstance(result, (list, tuple, np.ndarray)) and len(result) == 1:
            return result[0]
        return result

    if output_type == "NumpyNdarray":
        return lambda result: _as_array(unwrap(result))
    if output_type == "PandasDataFrame":
        return lambda result: _as_frame(unwrap(result))
    if output_type == "PandasSeries":
        return lambda result: _as_series(unwrap(result))
    if output_type == "JSON":
        return lambda result: to_jsonable(unwrap(result))
    if output_type == "Text":
        return lambda result: _as_text(unwrap(result))
    if output_type == "Image":
        return lambda result: _as_image(unwrap(result))
    raise InvalidArgument(f"unknown output type {output_type!r}")


def _cast(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    try:
        return array.astype(dtype, copy=False)
    except (ValueError, TypeError) as error:
        raise BadInput(f"the input cannot be {dtype}: {error}",
                       [field_error(["body"], str(error), "dtype_error")]) from None


def _as_array(result: Any) -> np.ndarray:
    if hasattr(result, "to_numpy"):
        return result.to_numpy()
    array = np.asarray(result)
    if array.dtype.hasobject:
        raise InvalidOutput(f"the model returned {type(result).__name__} values that are not "
                            "numbers; choose output JSON for this model")
    return array


def _as_frame(result: Any) -> Any:
    import pandas as pd

    if isinstance(result, pd.DataFrame):
        return result
    if isinstance(result, pd.Series):
        return result.to_frame()
    array = np.asarray(result) if not isinstance(result, (list, dict)) else None
    if array is not None and array.ndim == 1:
        return pd.DataFrame({"result": array})
    return pd.DataFrame(result)


def _as_series(result: Any) -> Any:
    import pandas as pd

    if isinstance(result, pd.Series):
        return result
    if isinstance(result, pd.DataFrame):
        return result.iloc[:, 0] if result.shape[1] == 1 else pd.Series(
            result.to_dict(orient="records"))
    array = np.asarray(result) if not isinstance(result, (list, dict)) else None
    if array is not None and array.ndim == 2 and array.shape[1] == 1:
        return pd.Series(array[:, 0])
    if array is not None and array.ndim > 1:
        return pd.Series(list(array.tolist()))
    return pd.Series(result)


def _as_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    plain = to_jsonable(result)
    if isinstance(plain, list) and len(plain) == 1 and isinstance(plain[0], str):
        return plain[0]
    if isinstance(plain, str):
        return plain
    import orjson

    return orjson.dumps(plain).decode("utf-8")


def _as_image(result: Any) -> Any:
    if hasattr(result, "save") and hasattr(result, "mode"):  # already a PIL image
        return result
    array = np.asarray(result)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.dtype != np.uint8:
        scale = 255.0 if array.size and float(np.nanmax(array)) <= 1.0 else 1.0
        array = np.clip(np.nan_to_num(array * scale), 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    return array
