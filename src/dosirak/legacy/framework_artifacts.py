"""The framework artifacts of 0.x services, each stored by the dosirak adapter of its framework.

    >>> from dosirak.frameworks.sklearn import SklearnModelArtifact      # the 0.x import paths
    >>> from dosirak.frameworks.pytorch import PytorchModelArtifact

``pack`` checks the object's kind at once (a clear error names what the artifact takes); the
framework is imported only when an object is checked, saved or loaded. Each class also reads and
writes its file in a BentoML 0.13 bundle (``artifacts/NAME.pkl``, ``NAME.pt``, ``NAME.model``...).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from dosirak.legacy.artifacts import BentoServiceArtifact


def _loaded(module: str) -> Any:
    """The framework module if the object could come from it (already imported), else None."""
    return sys.modules.get(module)


class SklearnModelArtifact(BentoServiceArtifact):
    """A fitted scikit-learn estimator or pipeline (``dosirak.sklearn``)."""

    adapter = "dosirak.sklearn"
    kind = "a scikit-learn estimator (an object with fit and predict or transform)"

    def __init__(self, name: str, pickle_extension: str = ".pkl") -> None:
        super().__init__(name)
        self.suffix = pickle_extension

    def accepts(self, obj: Any) -> bool:
        return callable(getattr(obj, "fit", None)) and any(
            callable(getattr(obj, method, None)) for method in ("predict", "transform"))

    def write_file(self, path: Path, obj: Any) -> None:
        import joblib

        joblib.dump(obj, path)

    def read_file(self, path: Path) -> Any:
        import joblib

        return joblib.load(path)


class KerasModelArtifact(BentoServiceArtifact):
    """A ``keras.Model`` (``dosirak.keras``; Keras 3 on any backend)."""

    adapter = "dosirak.keras"
    kind = "a keras.Model"
    suffix = ".h5"

    def __init__(self, name: str, custom_objects: dict[str, Any] | None = None,
                 model_extension: str = ".h5", store_as_json_and_weights: bool = False) -> None:
        super().__init__(name)
        self.suffix = model_extension
        self.custom_objects = custom_objects

    def accepts(self, obj: Any) -> bool:
        keras = _loaded("keras")
        return keras is not None and isinstance(obj, keras.Model)

    def write_file(self, path: Path, obj: Any) -> None:
        obj.save(path)

    def read_file(self, path: Path) -> Any:
        import keras

        return keras.models.load_model(path, custom_objects=self.custom_objects, compile=False)


class PytorchModelArtifact(BentoServiceArtifact):
    """A ``torch.nn.Module`` (``dosirak.pytorch``)."""

    adapter = "dosirak.pytorch"
    kind = "a torch.nn.Module"
    suffix = ".pt"

    def accepts(self, obj: Any) -> bool:
        torch = _loaded("torch")
        return torch is not None and isinstance(obj, torch.nn.Module)

    def write_file(self, path: Path, obj: Any) -> None:
        import cloudpickle
        import torch

        torch.save(obj, path, pickle_module=cloudpickle)

    def read_file(self, path: Path) -> Any:
        import torch

        model = torch.load(path, map_location="cpu", weights_only=False)
        return model.eval()


class XgboostModelArtifact(BentoServiceArtifact):
    """An ``xgboost.Booster`` or one of xgboost's estimators (``dosirak.xgboost``)."""

    adapter = "dosirak.xgboost"
    kind = "an xgboost.Booster (or XGBClassifier, XGBRegressor...)"
    suffix = ".model"

    def __init__(self, name: str, model_extension: str = ".model") -> None:
        super().__init__(name)
        self.suffix = model_extension

    def accepts(self, obj: Any) -> bool:
        xgb = _loaded("xgboost")
        return xgb is not None and isinstance(obj, (xgb.Booster, xgb.XGBModel))

    def write_file(self, path: Path, obj: Any) -> None:
        booster = obj.get_booster() if hasattr(obj, "get_booster") else obj
        booster.save_model(str(path))

    def read_file(self, path: Path) -> Any:
        import xgboost

        return xgboost.Booster(model_file=str(path))


class LightGBMModelArtifact(BentoServiceArtifact):
    """A ``lightgbm.Booster`` or one of LightGBM's estimators (``dosirak.lightgbm``)."""

    adapter = "dosirak.lightgbm"
    kind = "a lightgbm.Booster (or LGBMClassifier, LGBMRegressor...)"
    suffix = ".txt"

    def __init__(self, name: str, model_extension: str = ".txt") -> None:
        super().__init__(name)
        self.suffix = model_extension

    def accepts(self, obj: Any) -> bool:
        lgb = _loaded("lightgbm")
        return lgb is not None and isinstance(obj, (lgb.Booster, lgb.LGBMModel))

    def write_file(self, path: Path, obj: Any) -> None:
        booster = obj.booster_ if hasattr(obj, "booster_") else obj
        booster.save_model(str(path))

    def read_file(self, path: Path) -> Any:
        import lightgbm

        return lightgbm.Booster(model_file=str(path))


class TensorflowSavedModelArtifact(BentoServiceArtifact):
    """A TensorFlow 2 module or Keras model saved as a SavedModel (``dosirak.tensorflow``);
    inside the APIs it is the loaded SavedModel, whose ``signatures`` and tf.functions run it."""

    adapter = "dosirak.tensorflow"
    kind = "a tf.Module (or a Keras model on the TensorFlow backend)"
    suffix = "_saved_model"

    def accepts(self, obj: Any) -> bool:
        tf = _loaded("tensorflow")
        return tf is not None and isinstance(obj, tf.Module)

    def _from_model(self, loaded: Any, model: Any) -> Any:
        return loaded

    def write_file(self, path: Path, obj: Any) -> None:
        import tensorflow as tf

        tf.saved_model.save(obj, str(path))

    def read_file(self, path: Path) -> Any:
        import tensorflow as tf

        return tf.saved_model.load(str(path))


class OnnxModelArtifact(BentoServiceArtifact):
    """An ONNX model (``onnx.ModelProto`` or the path of a ``.onnx`` file); inside the APIs it
    is an ``onnxruntime.InferenceSession``, as 0.x gave with ``backend="onnxruntime"``."""

    adapter = "dosirak.onnx"
    kind = "an onnx.ModelProto or the path of an .onnx file"
    suffix = ".onnx"

    def __init__(self, name: str, backend: str = "onnxruntime") -> None:
        super().__init__(name)
        self.backend = backend

    def accepts(self, obj: Any) -> bool:
        onnx = _loaded("onnx")
        if isinstance(obj, (str, Path)):
            return Path(obj).is_file()
        return onnx is not None and isinstance(obj, onnx.ModelProto)

    def _to_model(self, obj: Any) -> Any:
        if isinstance(obj, (str, Path)):
            import onnx

            return onnx.load(str(obj))
        return obj

    def pack(self, obj: Any, metadata: dict[str, Any] | None = None) -> BentoServiceArtifact:
        super().pack(obj, metadata)
        self._object = self._session(self._to_model(obj))
        self._proto = self._to_model(obj)
        return self

    def save_to_store(self, name: str, labels: dict[str, str]) -> str:
        model = self._adapter().save_model(name, self._proto, labels=labels,
                                           metadata=self.metadata)
        self.tag = str(model.tag)
        return self.tag

    def _from_model(self, loaded: Any, model: Any) -> Any:
        return loaded

    def _session(self, proto: Any) -> Any:
        import onnxruntime

        return onnxruntime.InferenceSession(proto.SerializeToString(),
                                            providers=["CPUExecutionProvider"])

    def write_file(self, path: Path, obj: Any) -> None:
        path.write_bytes(self._proto.SerializeToString())

    def read_file(self, path: Path) -> Any:
        import onnx

        self._proto = onnx.load(str(path))
        return self._session(self._proto)


class TransformersModelArtifact(BentoServiceArtifact):
    """A Hugging Face model with its tokenizer: pack ``{"model": ..., "tokenizer": ...}``;
    inside the APIs it is that dict again (``dosirak.transformers`` stores the model, the
    tokenizer goes with it)."""

    adapter = "dosirak.transformers"
    kind = 'a dict {"model": a transformers PreTrainedModel, "tokenizer": its tokenizer}'
    suffix = ""

    def accepts(self, obj: Any) -> bool:
        transformers = _loaded("transformers")
        return (transformers is not None and isinstance(obj, dict) and
                isinstance(obj.get("model"), transformers.PreTrainedModel) and
                obj.get("tokenizer") is not None)

    def save_to_store(self, name: str, labels: dict[str, str]) -> str:
        packed = self.get()
        model = self._adapter().save_model(name, packed["model"], labels=labels,
                                           metadata=self.metadata,
                                           custom_objects={"tokenizer": packed["tokenizer"]})
        self.tag = str(model.tag)
        return self.tag

    def _from_model(self, loaded: Any, model: Any) -> Any:
        return {"model": loaded, "tokenizer": model.custom_objects.get("tokenizer")}

    def write_file(self, path: Path, obj: Any) -> None:
        obj["model"].save_pretrained(str(path))
        obj["tokenizer"].save_pretrained(str(path))

    def read_file(self, path: Path) -> Any:
        import transformers

        return {"model": transformers.AutoModel.from_pretrained(str(path), local_files_only=True),
                "tokenizer": transformers.AutoTokenizer.from_pretrained(
                    str(path), local_files_only=True)}
