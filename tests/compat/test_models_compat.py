"""Model creation and runner options of BentoML 1.x, with ``import dosirak as bentoml``:
``models.create`` (a directory you write), ``save_model(external_modules=...)``,
``Model.to_runnable()``, ``Model.with_options(partial_kwargs=...)`` and
``to_runner(embedded=True)``; served by a real ``dosirak serve``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import dosirak as bentoml
from dosirak.exceptions import InvalidArgument

from .serving import served

FEATURES = '''
class Scaler:
    """A model class living in a project module that is not installed."""

    def __init__(self, factor):
        self.factor = factor

    def predict(self, x, offset=0):
        return [value * self.factor + offset for value in x]
'''


def test_models_create_stores_a_directory_atomically(dosirak_home: Path) -> None:
    with bentoml.models.create("My_Weights", labels={"kind": "raw"}) as model_ref:
        (model_ref.path / "weights.json").write_text('{"w": [1, 2, 3]}')
        (model_ref.path / "sub").mkdir()
        (model_ref.path / "sub" / "vocab.txt").write_text("a\nb\n")
    stored = bentoml.models.get("my_weights:latest")
    assert model_ref.tag == stored.tag and model_ref.path == stored.path
    assert json.loads((stored.path / "weights.json").read_text()) == {"w": [1, 2, 3]}
    assert (stored.path / "sub" / "vocab.txt").read_text() == "a\nb\n"
    assert stored.info.labels == {"kind": "raw"}
    stored.verify()  # every file is in the manifest
    assert stored.load_model() == stored.path
    with pytest.raises(RuntimeError), bentoml.models.create("broken") as model_ref:
        (model_ref.path / "half.bin").write_bytes(b"x")
        raise RuntimeError("the block failed")
    with pytest.raises(bentoml.exceptions.ModelNotFound):
        bentoml.models.get("broken")
    assert not list((dosirak_home / "models" / ".tmp").glob("*/half.bin"))


def test_external_modules_travel_with_the_model(tmp_path: Path, dosirak_home: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "my_features.py").write_text(FEATURES)
    saver = textwrap.dedent('''
        import dosirak as bentoml
        import my_features

        bentoml.picklable_model.save_model(
            "scaler", my_features.Scaler(3), external_modules=[my_features],
            signatures={"predict": {"batchable": False}})
    ''')
    subprocess.run([sys.executable, "-c", saver], cwd=project, check=True, timeout=120,
                   env={**os.environ, "DOSIRAK_HOME": str(dosirak_home)})
    service = '''
        import dosirak as bentoml
        from dosirak.io import JSON

        scaler = bentoml.picklable_model.get("scaler:latest")
        plain = scaler.to_runner(name="plain")
        offset = scaler.with_options(partial_kwargs={"predict": {"offset": 100}}).to_runner(
            name="offset")
        embedded = scaler.to_runner(name="embedded", embedded=True)
        svc = bentoml.Service("scaling", runners=[plain, offset, embedded])


        @svc.api(input=JSON(), output=JSON())
        async def scale(values):
            return {"plain": await plain.predict.async_run(values),
                    "offset": await offset.predict.async_run(values),
                    "embedded": await embedded.predict.async_run(values)}
    '''
    elsewhere = tmp_path / "elsewhere"  # my_features is not importable here
    elsewhere.mkdir()
    (elsewhere / "config.yaml").write_text("runners:\n  placement: process\n  workers: 1\n")
    with served(elsewhere, service, "svc", "--config", "config.yaml",
                env={"DOSIRAK_HOME": str(dosirak_home)}) as server:
        status, _, body = server.post("/scale", [1, 2])
        assert status == 200, body
        assert body == {"plain": [3, 6], "offset": [103, 106], "embedded": [3, 6]}
        metadata = json.loads(server.get("/metadata")[1])
        placements = {r["name"]: r["placement"] for r in metadata["runners"]}
        assert placements == {"plain": "process", "offset": "process", "embedded": "local"}


def test_to_runnable_and_with_options_locally(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "scaler_module.py").write_text(FEATURES)
    import scaler_module

    saved = bentoml.picklable_model.save_model(
        "scaler", scaler_module.Scaler(2), signatures={"predict": {"batchable": False}})
    runnable = saved.to_runnable()
    assert issubclass(runnable, bentoml.Runnable) and "predict" in runnable.signatures()
    runner = bentoml.Runner(runnable, name="custom")
    runner.init_local()
    assert runner.predict.run([1, 2]) == [2, 4]
    tuned = saved.with_options(partial_kwargs={"predict": {"offset": 1}}).to_runner()
    tuned.init_local()
    assert tuned.predict.run(np.array([1, 2])) == [3, 5]
    with pytest.raises(InvalidArgument, match="predict"):
        saved.with_options(partial_kwargs={"nope": {}})
    with pytest.raises(InvalidArgument, match="installed"):
        bentoml.picklable_model.save_model("bad", 1, external_modules=[np])
