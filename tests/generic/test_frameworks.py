"""Seed 000: one config per framework serves a real stored model over real HTTP, no user Python.

Each test saves a small model of its framework, writes the config file a user would write, builds
the service from that file alone and calls it through uvicorn on 127.0.0.1; the answers must be
the model's own predictions, inside the seed's envelope.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import yaml
from sklearn import datasets, svm

import dosirak
from dosirak.generic import build_service
from live_server import serve

IRIS = datasets.load_iris()
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROWS = IRIS.data[[0, 50, 100, 149]]


def write_config(tmp_path: Path, config: dict, suffix: str = ".yaml") -> Path:
    path = tmp_path / f"service{suffix}"
    path.write_text(json.dumps(config) if suffix == ".json" else yaml.safe_dump(config))
    return path


def endpoint_config(model: str, **options) -> dict:
    return {"service": "generic", "endpoints": [{"name": "predict", "model": model, **options}]}


def envelope_result(response: httpx.Response) -> object:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["message"] == "Success"
    return body["result"]


def test_sklearn_seed_flat_json_config(tmp_path):
    clf = svm.SVC(gamma="scale").fit(IRIS.data, IRIS.target)
    dosirak.sklearn.save_model("iris_clf", clf)
    # The seed's own keys: service_name, model_name, framework, input_type, output_type.
    path = write_config(tmp_path, {"service_name": "iris_classifier",
                                   "model_name": "iris_clf:latest", "framework": "sklearn",
                                   "input_type": "NumpyNdarray", "output_type": "JSON"}, ".json")
    svc = build_service(path)
    with serve(svc) as url:
        result = envelope_result(httpx.post(f"{url}/predict", json=ROWS.tolist()))
    assert result == clf.predict(ROWS).tolist() == [0, 1, 2, 2]


def test_pytorch_module_float64_json_is_cast_to_float32(tmp_path):
    import torch
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    dosirak.pytorch.save_model("iris_net", net)
    svc = build_service(write_config(tmp_path, endpoint_config(
        "iris_net", input={"type": "NumpyNdarray", "shape": [-1, 4], "enforce_shape": True},
        output="NumpyNdarray")))
    with serve(svc) as url:
        result = envelope_result(httpx.post(f"{url}/predict", json=ROWS.tolist()))
    with torch.no_grad():
        expected = net(torch.from_numpy(ROWS.astype(np.float32))).numpy()
    np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_keras_model_pandas_dataframe_in_and_out(tmp_path):
    import keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(3, activation="softmax")])
    dosirak.keras.save_model("iris_keras", model)
    svc = build_service(write_config(tmp_path, endpoint_config(
        "iris_keras:latest", framework="keras", input="PandasDataFrame",
        output="PandasDataFrame")))
    frame = pd.DataFrame(ROWS, columns=COLUMNS)
    with serve(svc) as url:
        result = envelope_result(httpx.post(f"{url}/predict",
                                            json=frame.to_dict(orient="records")))
    expected = model.predict(ROWS.astype(np.float32), verbose=0)
    got = pd.DataFrame(result).to_numpy()  # records of columns "0", "1", "2"
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_tensorflow_module_series_is_one_row_as_in_the_seed(tmp_path):
    import tensorflow as tf

    class Affine(tf.Module):
        def __init__(self) -> None:
            self.w = tf.Variable(tf.reshape(tf.range(12, dtype=tf.float32) / 10.0, (4, 3)))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def __call__(self, x):
            return tf.matmul(x, self.w)

    module = Affine()
    dosirak.tensorflow.save_model("affine", module)
    svc = build_service(write_config(tmp_path, endpoint_config(
        "affine", input="PandasSeries", output="JSON")))
    with serve(svc) as url:
        # A Series of four features: one row, as the seed's create_input_dataframe makes it.
        result = envelope_result(httpx.post(f"{url}/predict", json=ROWS[0].tolist()))
    expected = module(tf.constant(ROWS[:1], dtype=tf.float32)).numpy()
    np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_xgboost_classifier_json_records_keep_feature_names(tmp_path):
    import xgboost as xgb
    frame = pd.DataFrame(IRIS.data, columns=COLUMNS)
    clf = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(frame, IRIS.target)
    dosirak.xgboost.save_model("iris_xgb", clf)
    svc = build_service(write_config(tmp_path, endpoint_config(
        "iris_xgb", method="predict_proba", input="JSON", output="NumpyNdarray")))
    records = frame.iloc[[0, 50, 100]].to_dict(orient="records")
    with serve(svc) as url:
        result = envelope_result(httpx.post(f"{url}/predict", json=records))
        one = envelope_result(httpx.post(f"{url}/predict", json=records[2]))
    expected = clf.predict_proba(frame.iloc[[0, 50, 100]])
    np.testing.assert_allclose(result, expected, rtol=1e-6)
    np.testing.assert_allclose(one, expected[2:], rtol=1e-6)


def test_lightgbm_and_onnx_models_in_one_service(tmp_path):
    import lightgbm
    import skl2onnx
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame(IRIS.data, columns=COLUMNS)
    booster = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(frame, IRIS.target)
    dosirak.lightgbm.save_model("iris_lgbm", booster)
    x32 = IRIS.data.astype(np.float32)
    logistic = LogisticRegression(max_iter=500).fit(x32, IRIS.target)
    proto = skl2onnx.to_onnx(logistic, x32[:1], options={"zipmap": False}, target_opset=17)
    dosirak.onnx.save_model("iris_onnx", proto)
    config = {"service": "two_models", "endpoints": [
        {"name": "lgbm", "model": "iris_lgbm", "input": "PandasDataFrame", "output": "JSON"},
        {"name": "onnx", "model": "iris_onnx", "input": "NumpyNdarray", "output": "JSON",
         "route": "/v1/onnx/infer",
         # The adapter returns a two-output graph's answers as a list, which the batcher would
         # read as rows: this endpoint calls the model once per request.
         "batching": {"enabled": False}},
    ]}
    svc = build_service(write_config(tmp_path, config))
    with serve(svc) as url:
        lgbm = envelope_result(httpx.post(f"{url}/lgbm", json=frame.iloc[[0, 50, 100]]
                                          .to_dict(orient="records")))
        onnx = envelope_result(httpx.post(f"{url}/v1/onnx/infer", json=ROWS.tolist()))
    assert lgbm == booster.predict(frame.iloc[[0, 50, 100]]).tolist()
    labels, probabilities = onnx  # the graph's two outputs, in order
    assert labels == logistic.predict(x32[[0, 50, 100, 149]]).tolist()
    np.testing.assert_allclose(probabilities, logistic.predict_proba(x32[[0, 50, 100, 149]]),
                               atol=1e-5)


def test_picklable_model_text_in_text_out_without_envelope(tmp_path):
    dosirak.picklable_model.save_model("shout", lambda text: text.upper() + "!")
    svc = build_service(write_config(tmp_path, endpoint_config(
        "shout", input="Text", output="Text", envelope=False)))
    with serve(svc) as url:
        response = httpx.post(f"{url}/predict", content="hello",
                              headers={"content-type": "text/plain"})
    assert response.status_code == 200
    assert response.text == "HELLO!"


def test_pytorch_image_input_is_a_batch_of_one(tmp_path):
    import torch
    from PIL import Image

    class MeanPixel(torch.nn.Module):
        def forward(self, images):
            return images.mean(dim=(1, 2))  # (batch, height, width, channels) -> channels

    dosirak.pytorch.save_model("mean_pixel", torch.jit.script(MeanPixel()))
    svc = build_service(write_config(tmp_path, endpoint_config(
        "mean_pixel", input={"type": "Image", "pilmode": "RGB"}, output="JSON")))
    pixels = np.zeros((4, 6, 3), dtype=np.uint8)
    pixels[..., 0] = 200
    pixels[:2, :, 2] = 60
    image = Image.fromarray(pixels)
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    with serve(svc) as url:
        result = envelope_result(httpx.post(f"{url}/predict", content=buffer.getvalue(),
                                            headers={"content-type": "image/png"}))
    np.testing.assert_allclose(result, [200.0, 0.0, 30.0])
