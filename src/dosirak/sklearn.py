"""Public face of the sklearn adapter; see ``dosirak.frameworks.sklearn``."""

from dosirak.frameworks.sklearn import get, load_model, save_model

__all__ = ["get", "load_model", "save_model"]
