"""Public face of the tensorflow adapter; see ``dosirak.frameworks.tensorflow``."""

from dosirak.frameworks.tensorflow import get, load_model, runnable_method, save_model

__all__ = ["get", "load_model", "runnable_method", "save_model"]
