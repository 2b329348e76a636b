"""BentoML 0.x's ``bentoml.service.artifacts.common``: ``PickleArtifact``, ``JSONArtifact``,
``TextFileArtifact``."""

from dosirak.legacy.artifacts import JSONArtifact, PickleArtifact, TextFileArtifact

__all__ = ["JSONArtifact", "PickleArtifact", "TextFileArtifact"]
