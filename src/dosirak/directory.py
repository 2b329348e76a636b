"""Public face of the models made with ``dosirak.models.create``; see
``dosirak.frameworks.directory``."""

from dosirak.frameworks.directory import get, load_model

__all__ = ["get", "load_model"]
