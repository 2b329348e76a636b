"""Public face of the pytorch adapter; see ``dosirak.frameworks.pytorch``."""

from dosirak.frameworks.pytorch import get, load_model, runnable_method, save_model

__all__ = ["get", "load_model", "runnable_method", "save_model"]
