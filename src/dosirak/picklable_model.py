"""Public face of the picklable_model adapter; see ``dosirak.frameworks.picklable_model``."""

from dosirak.frameworks.picklable_model import get, load_model, save_model

__all__ = ["get", "load_model", "save_model"]
