"""Names a lower module shows but a higher layer makes (``dosirak.faces``): each one works in a
fresh interpreter that imported only the lower module, and the higher layer is imported only
when the name is used."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from dosirak import faces
from dosirak.legacy import framework_artifacts

ARTIFACTS = {
    "keras": "KerasModelArtifact", "lightgbm": "LightGBMModelArtifact",
    "onnx": "OnnxModelArtifact", "pytorch": "PytorchModelArtifact",
    "sklearn": "SklearnModelArtifact", "tensorflow": "TensorflowSavedModelArtifact",
    "transformers": "TransformersModelArtifact", "xgboost": "XgboostModelArtifact",
}


def _fresh(code: str) -> dict[str, object]:
    """Run ``code`` in a new interpreter; it prints one JSON line, returned here."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize(("framework", "name"), sorted(ARTIFACTS.items()))
def test_each_0x_artifact_is_at_its_0x_path(framework: str, name: str) -> None:
    module = importlib.import_module(f"dosirak.frameworks.{framework}")
    assert getattr(module, name) is getattr(framework_artifacts, name)


def test_a_0x_artifact_in_a_process_that_imported_only_its_0x_path() -> None:
    found = _fresh(
        "import json, sys\n"
        "import dosirak.frameworks.sklearn as adapter\n"
        "before = 'dosirak.legacy' in sys.modules\n"
        "from dosirak.frameworks.sklearn import SklearnModelArtifact\n"
        "print(json.dumps({'before': before, 'class': SklearnModelArtifact.__module__ + '.' +\n"
        "                  SklearnModelArtifact.__name__}))\n")
    assert found == {"before": False,
                     "class": "dosirak.legacy.framework_artifacts.SklearnModelArtifact"}


def test_names_nobody_provided_are_attribute_errors() -> None:
    import dosirak.frameworks.onnx
    import dosirak.frameworks.sklearn

    with pytest.raises(AttributeError, match=r"module 'dosirak\.frameworks\.sklearn' has "
                                             r"no attribute 'OnnxModelArtifact'"):
        dosirak.frameworks.sklearn.OnnxModelArtifact  # noqa: B018
    with pytest.raises(ImportError, match="SklearnModelArtifact"):
        from dosirak.frameworks.onnx import SklearnModelArtifact  # noqa: F401
    with pytest.raises(AttributeError, match=r"module 'dosirak\.nowhere' has no attribute 'x'"):
        faces.get("dosirak.nowhere", "x")


def test_svc_asgi_app_in_a_process_that_imported_only_services() -> None:
    # What `uvicorn service:svc.asgi_app` does: the user's module imports the Service alone.
    found = _fresh(
        "import json, sys\n"
        "from dosirak.services import Service\n"
        "from dosirak.io import JSON\n"
        "svc = Service('echo')\n"
        "@svc.api(input=JSON(), output=JSON())\n"
        "def echo(body):\n"
        "    return body\n"
        "before = 'dosirak.server' in sys.modules\n"
        "from starlette.testclient import TestClient\n"
        "with TestClient(svc.asgi_app) as client:\n"
        "    answer = client.post('/echo', json={'a': 1}).json()\n"
        "print(json.dumps({'before': before, 'answer': answer,\n"
        "                  'once': svc.asgi_app is svc.asgi_app}))\n")
    assert found == {"before": False, "answer": {"a": 1}, "once": True}
