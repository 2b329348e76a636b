"""Public face of the keras adapter; see ``dosirak.frameworks.keras``."""

from dosirak.frameworks.keras import get, load_model, runnable_method, save_model

__all__ = ["get", "load_model", "runnable_method", "save_model"]
