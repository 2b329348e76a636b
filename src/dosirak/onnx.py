"""Public face of the onnx adapter; see ``dosirak.frameworks.onnx``."""

from dosirak.frameworks.onnx import get, load_model, runnable_method, save_model

__all__ = ["get", "load_model", "runnable_method", "save_model"]
