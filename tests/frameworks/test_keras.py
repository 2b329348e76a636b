"""The Keras adapter (Keras 3 ``.keras`` files), tested on the torch backend."""

from __future__ import annotations

import os

import numpy as np
import pytest

import dosirak
from dosirak.exceptions import InvalidArgument

assert os.environ["KERAS_BACKEND"] == "torch"  # set by conftest.py before keras is imported
import keras  # noqa: E402


def make_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(4,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(rows(16), np.arange(16) % 3, epochs=1, verbose=0)  # builds the optimizer state too
    return model


def rows(n: int = 6) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)


def test_model_predicts_the_same_in_a_fresh_process(fresh_process):
    model, x = make_model(), rows()
    saved = dosirak.keras.save_model("clf", model, metadata={"epochs": 0})

    assert saved.info.options == {
        "format": "keras", "backend": "torch", "model_class": "Functional",
        "input_spec": {"n_features": 4,
                       "outputs": {"predict": {"dtype": "<f4", "shape": [-1, 3]}}}}
    assert saved.info.signatures["predict"].to_dict() == {"batchable": True, "batch_dim": [0, 0]}
    assert {"keras", "torch"} <= set(saved.info.context["framework_versions"])
    out = fresh_process.run("""
        import keras, dosirak
        model = dosirak.keras.load_model("clf:latest")
        outputs["backend"] = keras.backend.backend()
        outputs["y"] = model.predict(inputs["x"], verbose=0)
    """, x=x)
    assert str(out["backend"]) == "torch"
    np.testing.assert_allclose(out["y"], model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


@keras.saving.register_keras_serializable(package="dosirak_tests")
class Doubler(keras.layers.Layer):
    """A custom layer; Keras finds it at load through custom_objects."""

    def call(self, x):
        return x * 2.0


def test_custom_objects_saved_with_the_model_are_handed_to_keras():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(2), Doubler()])
    x = rows(3)
    dosirak.keras.save_model("custom", model,
                             custom_objects={"dosirak_tests>Doubler": Doubler})

    with keras.saving.custom_object_scope({}):
        loaded = dosirak.keras.load_model("custom:latest")

    assert isinstance(loaded.layers[-1], Doubler)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)


def test_runnable_predict_is_quiet_and_returns_numpy(capfd):
    model, x = make_model(), rows(2)
    dosirak.keras.save_model("clf", model)
    loaded = dosirak.keras.load_model("clf:latest")
    capfd.readouterr()

    predict = dosirak.keras.runnable_method(loaded, "predict")
    call = dosirak.keras.runnable_method(loaded, "__call__")
    y, direct = predict(x), call(x)

    assert capfd.readouterr().out == ""  # no progress bar per request
    assert isinstance(y, np.ndarray) and isinstance(direct, np.ndarray)
    np.testing.assert_allclose(direct, y, rtol=1e-5, atol=1e-6)


def test_get_refuses_a_model_saved_by_another_adapter():
    dosirak.picklable_model.save_model("other", lambda x: x)

    with pytest.raises(InvalidArgument, match=r"saved with dosirak\.picklable_model"):
        dosirak.keras.get("other")


def test_save_refuses_objects_that_are_not_keras_models():
    with pytest.raises(InvalidArgument, match=r"keras\.Model"):
        dosirak.keras.save_model("clf", keras.layers.Dense(2))


def test_importing_the_adapter_loads_no_framework_and_loading_without_keras_names_the_extra(
        fresh_process):
    dosirak.keras.save_model("clf", make_model())

    assert fresh_process.heavy_modules_after("import dosirak, dosirak.keras") == []
    error = fresh_process.error("import dosirak; dosirak.keras.load_model('clf')",
                                blocked=["keras"])
    assert error.startswith("MissingDependency: ")
    assert "pip install 'dosirak[keras]'" in error
