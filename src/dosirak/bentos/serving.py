"""What serving a bento by tag needs from the stores: its own sources, and the very models it was
built with.

    >>> bento = dosirak.bentos.get("iris_classifier:latest")
    >>> check_models(bento)        # each model present with the digest the bento recorded
    >>> bento.path / SOURCE_DIR    # where its service is imported from

A bento names its models by full tag and content digest; the model store must hold each with the
same digest. The check reads one ``model.yaml`` per model and hashes its manifest (not the files:
``dosirak verify`` re-hashes those), so it costs milliseconds at every start.
"""

from __future__ import annotations

from dosirak.bentos.store import Bento
from dosirak.exceptions import ModelNotFound, NotFound, StoreCorrupted
from dosirak.tag import Tag

SOURCE_DIR = "src"


def check_models(bento: Bento) -> None:
    """Raise ``ModelNotFound`` or ``StoreCorrupted`` unless every model of ``bento`` is stored
    with the digest the bento was built with."""
    from dosirak.bentos.build import manifest_digest
    from dosirak.store import model_store

    store = model_store()
    fix = (f"import it (`dosirak models import MODEL.dosirakmodel`), or import the bento's "
           f"export, which carries its models (`dosirak import {bento.tag.name}.bento`)")
    for model in bento.models:
        tag = Tag.parse(model["tag"])
        try:
            info = store.read_info(store.resolve(tag))
        except NotFound:
            raise ModelNotFound(f"bento {bento.tag} uses the model {tag}, which the model store "
                                f"({store.root}) does not hold; {fix}") from None
        digest = manifest_digest(info.get("manifest") or {})
        if digest != model["digest"]:
            raise StoreCorrupted(f"bento {bento.tag} was built with the model {tag} of digest "
                                 f"{model['digest'][:12]}, but the model store holds {tag} with "
                                 f"digest {digest[:12]} (replaced since the build); {fix} "
                                 "with --force, or rebuild the bento against the stored model")
