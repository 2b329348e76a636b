"""The TensorFlow adapter: a tf.Module saved as a SavedModel and run in a fresh process.

Importing TensorFlow takes seconds, so each test checks several things at once.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import dosirak
from dosirak.exceptions import InvalidArgument


class Affine(tf.Module):
    """softmax(x @ w + b), with a fixed input signature, and a method traced by calling it."""

    def __init__(self) -> None:
        super().__init__()
        self.w = tf.Variable(tf.random.stateless_normal((4, 3), seed=(1, 2)))
        self.b = tf.Variable(tf.constant([0.1, -0.2, 0.3]))

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def __call__(self, x):
        return tf.nn.softmax(x @ self.w + self.b)

    @tf.function
    def logits(self, x):
        return {"logits": x @ self.w + self.b}


def rows(n: int = 5) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)


def test_module_predicts_the_same_in_a_fresh_process(fresh_process):
    module, x = Affine(), rows()
    module.logits(tf.constant(x))  # traced now, so the SavedModel carries it
    saved = dosirak.tensorflow.save_model("affine", module, labels={"team": "tf"})

    assert saved.info.options == {"format": "saved_model",
                                  "serving_signatures": ["serving_default"], "input_spec": {
                                      "n_features": 4, "outputs": {"__call__": {
                                          "dtype": "<f4", "shape": [-1, 3]}}}}
    assert saved.info.signatures["__call__"].to_dict() == {"batchable": True, "batch_dim": [0, 0]}
    assert "tensorflow-cpu" in saved.info.context["framework_versions"]
    out = fresh_process.run("""
        import dosirak
        module = dosirak.tensorflow.load_model("affine:latest")
        outputs["call"] = module(inputs["x"]).numpy()
        outputs["logits"] = module.logits(inputs["x"])["logits"].numpy()
        outputs["serving"] = module.signatures["serving_default"](x=inputs["x"])["output_0"]
        run = dosirak.tensorflow.runnable_method(module, "__call__")
        outputs["runnable"] = run(inputs["x"])
        outputs["runnable_is_numpy"] = isinstance(outputs["runnable"], np.ndarray)
        outputs["runnable_logits"] = dosirak.tensorflow.runnable_method(module, "logits")(
            inputs["x"])["logits"]
    """, x=x)

    expected = module(x).numpy()
    for key in ("call", "serving", "runnable"):
        np.testing.assert_allclose(out[key], expected, rtol=1e-6, atol=1e-7, err_msg=key)
    assert out["runnable_is_numpy"]
    expected_logits = module.logits(tf.constant(x))["logits"].numpy()
    np.testing.assert_allclose(out["logits"], expected_logits, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["runnable_logits"], expected_logits, rtol=1e-6, atol=1e-6)


def test_save_and_get_refuse_what_is_not_a_tensorflow_module():
    plain = tf.Module()
    plain.v = tf.Variable(1.0)
    saved = dosirak.tensorflow.save_model("plain", plain)  # no __call__: no serving signature
    assert saved.info.options["serving_signatures"] == []
    dosirak.picklable_model.save_model("other", lambda x: x)

    with pytest.raises(InvalidArgument, match=r"tf\.Module"):
        dosirak.tensorflow.save_model("bad", lambda x: x)
    with pytest.raises(InvalidArgument, match=r"saved with dosirak\.picklable_model"):
        dosirak.tensorflow.get("other")
    with pytest.raises(InvalidArgument, match=r"saved with dosirak\.tensorflow"):
        dosirak.pytorch.load_model("plain")
    assert float(dosirak.tensorflow.load_model("plain").v.numpy()) == 1.0


def test_importing_the_adapter_loads_no_framework_and_loading_without_tf_names_the_extra(
        fresh_process):
    dosirak.tensorflow.save_model("affine", Affine())

    loaded = fresh_process.heavy_modules_after(
        "import dosirak, dosirak.tensorflow, dosirak.models\n"
        "dosirak.tensorflow.get('affine')")
    assert loaded == []
    error = fresh_process.error("import dosirak; dosirak.tensorflow.load_model('affine')",
                                blocked=["tensorflow"])
    assert error.startswith("MissingDependency: ")
    assert "pip install 'dosirak[tensorflow]'" in error
