"""The same IrisClassifier with a Keras (Keras 3 on torch), a PyTorch and an XGBoost artifact
built in the test, packed, saved and served by real processes over real HTTP; and seed 004's
TF2 image service: a SavedModel that decodes PNG bytes itself, fed ``{"instances": [{"b64":
...}]}`` through ``TfTensorInput``."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from legacy.seed import run_python, write_project
from live_server import Served

# Each framework's IrisClassifier: the seed's class with its artifact (and the line that calls
# the model) swapped; the packer trains the model on iris and saves the service, as the seed's.
SERVICES = {
    "keras": ('''\
import numpy as np
import pandas as pd

from dosirak import env, artifacts, api, BentoService
from dosirak.adapters import DataframeInput
from dosirak.frameworks.keras import KerasModelArtifact

@env(infer_pip_packages=True)
@artifacts([KerasModelArtifact('model')])
class IrisClassifier(BentoService):
    """Iris classes from a Keras model"""

    @api(input=DataframeInput(), batch=True)
    def predict(self, df: pd.DataFrame):
        """The class of each row"""
        return np.argmax(self.artifacts.model.predict(df.to_numpy("float32"), verbose=0), axis=1)
''', '''\
import keras
import numpy as np
from sklearn import datasets

X, y = datasets.load_iris(return_X_y=True)
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((4,)), keras.layers.Normalization(),
                          keras.layers.Dense(16, activation="relu"),
                          keras.layers.Dense(3, activation="softmax")])
model.layers[0].adapt(X.astype("float32"))
model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
model.fit(X.astype("float32"), y, epochs=60, verbose=0)

from bento_service import IrisClassifier

svc = IrisClassifier()
svc.pack('model', model, metadata={"framework": "keras", "backend": keras.backend.backend()})
saved_path = svc.save()
'''),
    "pytorch": ('''\
import pandas as pd
import torch

from dosirak import env, artifacts, api, BentoService
from dosirak.adapters import DataframeInput
from dosirak.frameworks.pytorch import PytorchModelArtifact


class IrisNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(),
                                          torch.nn.Linear(16, 3))

    def forward(self, x):
        return self.layers(x)


@env(infer_pip_packages=True)
@artifacts([PytorchModelArtifact('model')])
class IrisClassifier(BentoService):
    """Iris classes from a PyTorch model"""

    @api(input=DataframeInput(), batch=True)
    def predict(self, df: pd.DataFrame):
        """The class of each row"""
        with torch.no_grad():
            scores = self.artifacts.model(torch.tensor(df.to_numpy(), dtype=torch.float32))
        return scores.argmax(dim=1).numpy()
''', '''\
import torch
from sklearn import datasets

from bento_service import IrisClassifier, IrisNet

X, y = datasets.load_iris(return_X_y=True)
torch.manual_seed(0)
net = IrisNet()
optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
inputs, targets = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
for _ in range(300):
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(net(inputs), targets).backward()
    optimizer.step()
net.eval()

svc = IrisClassifier()
svc.pack('model', net, metadata={"framework": "pytorch"})
saved_path = svc.save()
'''),
    "xgboost": ('''\
import pandas as pd
import xgboost as xgb

from dosirak import env, artifacts, api, BentoService
from dosirak.adapters import DataframeInput
from dosirak.frameworks.xgboost import XgboostModelArtifact

@env(infer_pip_packages=True)
@artifacts([XgboostModelArtifact('model')])
class IrisClassifier(BentoService):
    """Iris classes from an XGBoost booster"""

    @api(input=DataframeInput(), batch=True)
    def predict(self, df: pd.DataFrame):
        """The class of each row"""
        return self.artifacts.model.predict(xgb.DMatrix(df.to_numpy())).argmax(axis=1)
''', '''\
import xgboost as xgb
from sklearn import datasets

X, y = datasets.load_iris(return_X_y=True)
booster = xgb.train({"objective": "multi:softprob", "num_class": 3, "seed": 0},
                    xgb.DMatrix(X, label=y), num_boost_round=20)

from bento_service import IrisClassifier

svc = IrisClassifier()
svc.pack('model', booster, metadata={"framework": "xgboost"})
saved_path = svc.save()
'''),
}
# Rows of each class of iris; a trained model classifies them right.
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.4, 3.2, 4.5, 1.5], [6.7, 3.0, 5.2, 2.3]]


@pytest.mark.parametrize("framework", sorted(SERVICES))
def test_iris_classifier_with_a_framework_artifact(framework: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    service, packer = SERVICES[framework]
    project = write_project(tmp_path / framework, service, packer)
    env = {"KERAS_BACKEND": "torch"} if framework == "keras" else {}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    done = run_python(project, "bento_packer.py")
    assert done.returncode == 0, done.stderr[-3000:]
    with Served(["IrisClassifier:latest"], cwd=project, env=env, timeout=120) as server:
        status, _, answer = server.post("/predict", ROWS)
        assert (status, answer) == (200, [0, 1, 2])
        status, _, answer = server.post("/predict", [ROWS[2]])
        assert (status, answer) == (200, [2])
        _, metadata = server.get("/metadata")
    artifact = json.loads(metadata)["bentoml"]["artifacts"][0]
    assert artifact["metadata"]["framework"] == framework
    model = json.loads(metadata)["models"][0]
    assert model["module"] == f"dosirak.{framework}"
    if framework == "keras":
        assert artifact["metadata"]["backend"] == "torch"


TF_SERVICE = '''\
from dosirak import env, artifacts, api, BentoService
from dosirak.adapters import TfTensorInput
from dosirak.frameworks.tensorflow import TensorflowSavedModelArtifact

@env(infer_pip_packages=True)
@artifacts([TensorflowSavedModelArtifact('model')])
class FashionMnistTensorflow(BentoService):
    """Classifies PNG images: the model decodes the bytes itself"""

    @api(input=TfTensorInput(), batch=True)
    def predict(self, inputs):
        """1 for a bright image, 0 for a dark one"""
        return self.artifacts.model.predict(inputs)
'''

TF_PACKER = '''\
import tensorflow as tf

class Decoder(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def predict(self, images):
        def one(data):
            pixels = tf.cast(tf.io.decode_png(data, channels=1), tf.float32)
            return tf.reduce_mean(pixels)
        means = tf.map_fn(one, images, fn_output_signature=tf.float32)
        return tf.cast(means > 127.0, tf.int64)

from bento_service import FashionMnistTensorflow

svc = FashionMnistTensorflow()
svc.pack('model', Decoder())
saved_path = svc.save()
'''


def _png(level: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((28, 28), level, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_tf2_model_decoding_png_serves_seed_004_b64_instances(tmp_path: Path) -> None:
    project = write_project(tmp_path / "tf", TF_SERVICE, TF_PACKER)
    done = run_python(project, "bento_packer.py")
    assert done.returncode == 0, done.stderr[-3000:]
    with Served(["FashionMnistTensorflow:latest"], cwd=project, timeout=180) as server:
        # seed 004: echo '{"instances":[{"b64":"'$(base64 test.png)'"}]}' > test.json
        body = {"instances": [{"b64": base64.b64encode(_png(250)).decode()}]}
        status, _, answer = server.post("/predict", body)
        assert (status, answer) == (200, [1])
        body = {"instances": [{"b64": base64.b64encode(_png(level)).decode()}
                              for level in (10, 250, 30)]}
        status, _, answer = server.post("/predict", body)
        assert (status, answer) == (200, [0, 1, 0])
        status, _, answer = server.post("/predict", {"instances": [{"b64": "not base64!"}]})
        assert status == 400 and "base64" in answer["error"]
        status, _, answer = server.post("/predict", {"rows": []})
        assert status == 400 and "instances" in answer["error"]
