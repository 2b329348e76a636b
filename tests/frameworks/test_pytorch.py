"""The PyTorch adapter: whole modules and TorchScript, saved here and loaded in a fresh process."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

import dosirak
from dosirak.exceptions import InvalidArgument

LOAD_AND_PREDICT = """
import torch
import dosirak
net = dosirak.pytorch.load_model("net:latest")
outputs["torchscript"] = isinstance(net, torch.jit.ScriptModule)
with torch.no_grad():
    outputs["y"] = net(torch.from_numpy(inputs["x"])).numpy()
"""


def make_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    ).eval()


def rows(n: int = 5) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)


def predict(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


def test_module_saved_whole_predicts_the_same_in_a_fresh_process(fresh_process):
    net, x = make_net(), rows()
    saved = dosirak.pytorch.save_model("net", net, labels={"stage": "dev"}, metadata={"acc": 0.9})

    assert saved.info.options == {
        "torchscript": False, "model_class": "torch.nn.modules.container.Sequential"}
    assert saved.info.signatures["__call__"].to_dict() == {"batchable": True, "batch_dim": [0, 0]}
    assert "torch" in saved.info.context["framework_versions"]
    out = fresh_process.run(LOAD_AND_PREDICT, x=x)
    assert not out["torchscript"]
    np.testing.assert_allclose(out["y"], predict(net, x), rtol=1e-6, atol=1e-6)


def test_torchscript_module_predicts_the_same_in_a_fresh_process(fresh_process):
    class Scaled(torch.nn.Module):  # defined here: TorchScript needs no importable class
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.linear(x)) * 2.0

    torch.manual_seed(1)
    scripted = torch.jit.script(Scaled().eval())
    x = rows(7)
    saved = dosirak.pytorch.save_model("net", scripted)

    assert saved.info.options["torchscript"] is True
    out = fresh_process.run(LOAD_AND_PREDICT, x=x)
    assert out["torchscript"]
    np.testing.assert_allclose(out["y"], predict(scripted, x), rtol=1e-6, atol=1e-6)


def test_pickled_module_of_a_user_class_needs_its_code_importable(tmp_path, fresh_process,
                                                                  monkeypatch):
    code = tmp_path / "code"
    code.mkdir()
    (code / "tiny_net.py").write_text(textwrap.dedent("""
        import torch

        class TinyNet(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.linear = torch.nn.Linear(4, 1)

            def forward(self, x):
                return self.linear(x).squeeze(-1)
    """))
    monkeypatch.syspath_prepend(str(code))
    import tiny_net

    torch.manual_seed(2)
    net, x = tiny_net.TinyNet().eval(), rows()
    saved = dosirak.pytorch.save_model("net", net)
    assert saved.info.options["model_class"] == "tiny_net.TinyNet"

    out = fresh_process.run(LOAD_AND_PREDICT, pythonpath=code, x=x)
    np.testing.assert_allclose(out["y"], predict(net, x), rtol=1e-6, atol=1e-6)

    error = fresh_process.error("import dosirak; dosirak.pytorch.load_model('net:latest')")
    assert error.startswith("MissingDependency: ")
    assert "tiny_net.TinyNet" in error and "PYTHONPATH" in error and "TorchScript" in error


def test_runnable_method_takes_numpy_and_returns_numpy_without_autograd():
    net, x = make_net().train(), rows(3)  # train mode: results must still not track gradients
    dosirak.pytorch.save_model("net", net)
    loaded = dosirak.pytorch.load_model("net:latest")

    run = dosirak.pytorch.runnable_method(loaded, "__call__")
    y = run(x)

    assert isinstance(y, np.ndarray)
    np.testing.assert_allclose(y, predict(net, x), rtol=1e-6, atol=1e-6)


def test_runner_calls_the_module_with_numpy_rows():
    net, x = make_net(), rows(4)
    runner = dosirak.pytorch.save_model("net", net).to_runner()
    runner.init_local()

    np.testing.assert_allclose(runner.run(x), predict(net, x), rtol=1e-6, atol=1e-6)


def test_load_map_location_and_custom_objects_round_trip():
    dosirak.pytorch.save_model("net", make_net(), custom_objects={"classes": ["a", "b", "c"]})

    model = dosirak.pytorch.get("net:latest")
    loaded = dosirak.pytorch.load_model(model, device="cpu")

    assert next(loaded.parameters()).device.type == "cpu"
    assert model.custom_objects == {"classes": ["a", "b", "c"]}


def test_get_refuses_a_model_saved_by_another_adapter():
    dosirak.picklable_model.save_model("other", lambda x: x)
    dosirak.pytorch.save_model("net", make_net())

    with pytest.raises(InvalidArgument, match=r"saved with dosirak.picklable_model.*"
                                              r"dosirak\.picklable_model\.load_model"):
        dosirak.pytorch.get("other:latest")
    with pytest.raises(InvalidArgument, match=r"saved with dosirak\.pytorch"):
        dosirak.picklable_model.load_model("net:latest")


def test_save_refuses_objects_that_are_not_modules():
    with pytest.raises(InvalidArgument, match="picklable_model"):
        dosirak.pytorch.save_model("net", {"weights": [1, 2]})


def test_importing_dosirak_and_the_adapter_loads_no_framework(fresh_process):
    assert fresh_process.heavy_modules_after("import dosirak, dosirak.pytorch") == []


def test_loading_without_torch_names_the_extra(fresh_process):
    dosirak.pytorch.save_model("net", make_net())

    error = fresh_process.error("import dosirak; dosirak.pytorch.load_model('net:latest')",
                                blocked=["torch"])

    assert error.startswith("MissingDependency: ")
    assert "pip install 'dosirak[pytorch]'" in error


def test_model_load_model_dispatches_to_this_adapter():
    net, x = make_net(), rows()
    dosirak.pytorch.save_model("net", net)

    loaded = dosirak.models.get("net:latest").load_model()

    np.testing.assert_allclose(predict(loaded, x), predict(net, x))


def test_runner_names_a_signature_the_module_lacks():
    dosirak.pytorch.save_model("net", make_net(), signatures={"predict": {"batchable": True}})
    runner = dosirak.pytorch.get("net").to_runner()

    with pytest.raises(InvalidArgument, match="has no method 'predict'"):
        runner.init_local()
