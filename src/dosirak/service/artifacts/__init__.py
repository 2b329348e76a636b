"""BentoML 0.x's ``bentoml.service.artifacts``: the artifact base class and collection."""

from dosirak.legacy.artifacts import ArtifactCollection, BentoServiceArtifact

__all__ = ["ArtifactCollection", "BentoServiceArtifact"]
