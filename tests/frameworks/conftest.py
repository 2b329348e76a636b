"""Helpers for the framework adapter tests: running code in a fresh interpreter.

A model saved in the test process is loaded again in a new ``python`` process that shares the
test's ``DOSIRAK_HOME`` (the autouse fixture of ``tests/conftest.py``), so nothing from the saving
process (imported classes, caches, live objects) can make a broken save look fine.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# Keras picks its backend once, at import: the keras tests run on torch. Set before any test
# imports keras; the child processes inherit it.
os.environ["KERAS_BACKEND"] = "torch"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be downloaded: fail fast if tried
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

# Every framework an adapter may import; `import dosirak` must load none of them.
HEAVY_MODULES = (
    "torch", "tensorflow", "keras", "sklearn", "joblib", "xgboost", "lightgbm", "onnx",
    "onnxruntime", "transformers", "safetensors",
)

_PRELUDE = """\
import sys
for _name in {blocked!r}:
    sys.modules[_name] = None  # makes `import _name` raise ImportError, as if not installed
import numpy as np
inputs = dict(np.load({inputs!r}, allow_pickle=False))
outputs = {{}}
"""
_EPILOGUE = """
np.savez({outputs!r}, **{{key: np.asarray(value) for key, value in outputs.items()}})
"""


class FreshProcess:
    """Runs code in new interpreters that share the test's environment and DOSIRAK_HOME."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.counter = itertools.count()

    def run(self, code: str, *, blocked: Iterable[str] = (), pythonpath: Path | None = None,
            **inputs: Any) -> dict[str, np.ndarray]:
        """Run ``code``; it reads the dict ``inputs`` and fills the dict ``outputs``.

        Returns ``outputs`` as numpy arrays. ``blocked`` modules fail to import in that process,
        as if they were not installed.
        """
        exchange = self.directory / f"fresh-{next(self.counter)}"
        exchange.mkdir()
        np.savez(exchange / "inputs.npz", **inputs)
        script = (
            _PRELUDE.format(blocked=tuple(blocked), inputs=str(exchange / "inputs.npz"))
            + textwrap.dedent(code)
            + _EPILOGUE.format(outputs=str(exchange / "outputs.npz"))
        )
        env = dict(os.environ)
        if pythonpath is not None:
            env["PYTHONPATH"] = str(pythonpath)
        else:
            env.pop("PYTHONPATH", None)
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=exchange, env=env, capture_output=True,
            text=True, timeout=120, check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"fresh process failed ({done.returncode}):\n{done.stderr[-4000:]}")
        with np.load(exchange / "outputs.npz", allow_pickle=False) as saved:
            return {key: saved[key] for key in saved.files}

    def heavy_modules_after(self, statement: str) -> list[str]:
        """The heavy framework modules loaded after running ``statement``."""
        out = self.run(
            f"{statement}\n"
            f"outputs['loaded'] = np.array([m for m in {HEAVY_MODULES!r} if m in sys.modules],"
            " dtype=str)\n"
        )
        return out["loaded"].tolist()

    def error(self, statement: str, *, blocked: Iterable[str] = ()) -> str:
        """``"ErrorType: message"`` raised by ``statement`` ("" if it raised nothing)."""
        out = self.run(
            "try:\n"
            + textwrap.indent(textwrap.dedent(statement).strip(), "    ")
            + "\n    outputs['error'] = np.array('')\n"
            "except Exception as error:\n"
            "    outputs['error'] = np.array(f'{type(error).__name__}: {error}')\n",
            blocked=blocked,
        )
        return str(out["error"])


@pytest.fixture
def fresh_process(tmp_path: Path) -> FreshProcess:
    """A ``FreshProcess`` whose exchange files live under the test's tmp_path."""
    return FreshProcess(tmp_path)
