"""The other artifacts (pickle, JSON, text, LightGBM, ONNX) through both stores a saved service
may use: the model store (``save`` then ``dosirak.load``) and 0.13's files (``save_to_dir`` then
``dosirak.load``), each in a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dosirak

SERVICE = '''\
from dosirak import artifacts, api, BentoService
from dosirak.adapters import JsonInput
from dosirak.frameworks.lightgbm import LightGBMModelArtifact
from dosirak.frameworks.onnx import OnnxModelArtifact
from dosirak.service.artifacts.common import JSONArtifact, PickleArtifact, TextFileArtifact


@artifacts([PickleArtifact('scale'), JSONArtifact('labels'), TextFileArtifact('note'),
            LightGBMModelArtifact('lgb'), OnnxModelArtifact('double')])
class Everything(BentoService):
    @api(input=JsonInput(), batch=True)
    def predict(self, items):
        return items
'''

PACKER = '''\
import json, sys
import lightgbm, numpy as np, onnx
from onnx import TensorProto, helper
from bento_service import Everything

X = np.random.default_rng(0).normal(size=(200, 3))
booster = lightgbm.train({"objective": "regression", "verbose": -1},
                         lightgbm.Dataset(X, label=X[:, 0] * 2), num_boost_round=5)
graph = helper.make_graph(
    [helper.make_node("Add", ["x", "x"], ["y"])], "double",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8

svc = Everything()
svc.pack("scale", lambda v: v * 10).pack("labels", {"0": "setosa"}, metadata={"n": 1})
svc.pack("note", "hello").pack("lgb", booster).pack("double", model)
print(svc.save() if sys.argv[1] == "store" else svc.save_to_dir("saved"))
'''

CHECK = '''\
import json, sys
import numpy as np
import dosirak

svc = dosirak.load(sys.argv[1])
a = svc.artifacts
session = a.double
doubled = session.run(None, {"x": np.ones((1, 2), np.float32)})[0].tolist()
print(json.dumps([a.scale(2), a.labels, a["labels"].metadata, a.note,
                  type(a.lgb).__name__, doubled]))
'''


def test_common_artifacts_round_trip_through_both_stores(tmp_path: Path) -> None:
    (tmp_path / "bento_service.py").write_text(SERVICE)
    (tmp_path / "bento_packer.py").write_text(PACKER)
    (tmp_path / "check.py").write_text(CHECK)
    expected = [20, {"0": "setosa"}, {"n": 1}, "hello", "Booster", [[2.0, 2.0]]]
    for where in ("store", "dir"):
        done = subprocess.run([sys.executable, "bento_packer.py", where], cwd=tmp_path,
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        path = done.stdout.strip().splitlines()[-1]
        checked = subprocess.run([sys.executable, "check.py", path], cwd=tmp_path,
                                 capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stderr[-3000:]
        assert json.loads(checked.stdout) == expected, where
    modules = sorted(model.info.module for model in dosirak.models.list())
    assert modules == ["dosirak.lightgbm", "dosirak.onnx", "dosirak.picklable_model",
                       "dosirak.picklable_model", "dosirak.picklable_model"]
