"""Public face of the lightgbm adapter; see ``dosirak.frameworks.lightgbm``."""

from dosirak.frameworks.lightgbm import get, load_model, save_model

__all__ = ["get", "load_model", "save_model"]
