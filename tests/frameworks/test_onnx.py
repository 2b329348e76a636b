"""The ONNX adapter: models converted with skl2onnx, run by ONNX Runtime in a fresh process."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import dosirak
from dosirak.exceptions import InvalidArgument, NotFound


@pytest.fixture(scope="module")
def iris() -> tuple[LogisticRegression, np.ndarray, onnx.ModelProto]:
    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    classifier = LogisticRegression(max_iter=500).fit(x, y)
    proto = to_onnx(classifier, x[:1], options={"zipmap": False}, target_opset=17)
    return classifier, x, proto


def run_here(proto: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def test_model_proto_predicts_the_same_in_a_fresh_process(iris, fresh_process):
    classifier, x, proto = iris
    saved = dosirak.onnx.save_model("iris", proto, labels={"from": "skl2onnx"})

    assert saved.info.options["inputs"] == ["X"]
    assert saved.info.options["outputs"] == ["label", "probabilities"]
    assert saved.info.options["opset"]["ai.onnx"] == 17
    assert saved.info.signatures["run"].to_dict() == {"batchable": True, "batch_dim": [0, 0]}
    out = fresh_process.run("""
        import dosirak
        session = dosirak.onnx.load_model("iris:latest")
        outputs["type"] = type(session).__name__
        outputs["providers"] = session.get_providers()
        outputs["label"], outputs["proba"] = session.run(None, {"X": inputs["x"]})
        label, proba = dosirak.onnx.runnable_method(session, "run")(inputs["x"])
        outputs["runnable_label"], outputs["runnable_proba"] = label, proba
    """, x=x)

    expected_label, expected_proba = run_here(proto, x)
    assert str(out["type"]) == "InferenceSession"
    assert out["providers"].tolist() == ["CPUExecutionProvider"]
    np.testing.assert_array_equal(out["label"], expected_label)
    np.testing.assert_array_equal(out["runnable_label"], expected_label)
    np.testing.assert_allclose(out["proba"], expected_proba, rtol=1e-6)
    np.testing.assert_allclose(out["runnable_proba"], expected_proba, rtol=1e-6)
    # and the converted model agrees with the scikit-learn model it came from
    np.testing.assert_array_equal(out["label"], classifier.predict(x))
    np.testing.assert_allclose(out["proba"], classifier.predict_proba(x), atol=1e-5)


def test_a_file_path_is_stored_as_its_model(iris, tmp_path):
    _, x, proto = iris
    path = tmp_path / "exported.onnx"
    onnx.save_model(proto, str(path))

    dosirak.onnx.save_model("iris", path)
    run = dosirak.onnx.runnable_method(dosirak.onnx.load_model("iris"), "run")

    np.testing.assert_allclose(run(X=x)[1], run_here(proto, x)[1], rtol=1e-6)
    with pytest.raises(NotFound, match="no ONNX file"):
        dosirak.onnx.save_model("missing", tmp_path / "missing.onnx")


def test_runner_runs_the_session_with_plain_arrays(iris):
    _, x, proto = iris
    runner = dosirak.onnx.save_model("iris", proto).to_runner()
    runner.init_local()

    # runner.methods["run"]: the name `runner.run` belongs to Runner's own __call__ shortcut
    label, proba = runner.methods["run"].run(x[:7])

    expected_label, expected_proba = run_here(proto, x[:7])
    np.testing.assert_array_equal(label, expected_label)
    np.testing.assert_allclose(proba, expected_proba, rtol=1e-6)


def test_save_refuses_invalid_models_and_get_refuses_other_adapters(iris):
    _, _, proto = iris
    broken = onnx.ModelProto()
    broken.CopyFrom(proto)
    broken.graph.node[0].input[0] = "no_such_tensor"

    with pytest.raises(InvalidArgument, match="not valid"):
        dosirak.onnx.save_model("broken", broken)
    with pytest.raises(InvalidArgument, match="ModelProto"):
        dosirak.onnx.save_model("bad", b"\x08\x07")
    assert dosirak.models.list() == []  # the refused save left nothing behind
    run = dosirak.onnx.runnable_method(
        dosirak.onnx.load_model(dosirak.onnx.save_model("iris", proto)), "run")
    with pytest.raises(InvalidArgument, match="takes 1 inputs"):
        run(np.zeros((1, 4), np.float32), np.zeros((1, 4), np.float32))
    dosirak.picklable_model.save_model("other", lambda v: v)
    with pytest.raises(InvalidArgument, match=r"saved with dosirak\.picklable_model"):
        dosirak.onnx.get("other")


def test_importing_the_adapter_loads_no_framework_and_loading_without_onnxruntime_names_the_extra(
        iris, fresh_process):
    dosirak.onnx.save_model("iris", iris[2])

    assert fresh_process.heavy_modules_after("import dosirak, dosirak.onnx") == []
    error = fresh_process.error("import dosirak; dosirak.onnx.load_model('iris')",
                                blocked=["onnxruntime"])
    assert error.startswith("MissingDependency: ")
    assert "pip install 'dosirak[onnx]'" in error
