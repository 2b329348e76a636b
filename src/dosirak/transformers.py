"""Public face of the transformers adapter; see ``dosirak.frameworks.transformers``."""

from dosirak.frameworks.transformers import get, load_model, save_model

__all__ = ["get", "load_model", "save_model"]
