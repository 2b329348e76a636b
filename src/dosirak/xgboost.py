"""Public face of the xgboost adapter; see ``dosirak.frameworks.xgboost``."""

from dosirak.frameworks.xgboost import get, load_model, runnable_method, save_model

__all__ = ["get", "load_model", "runnable_method", "save_model"]
