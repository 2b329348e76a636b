"""BentoML 0.x's API (seeds 001 and 004) on dosirak: ``BentoService``, ``@env``, ``@artifacts``,
``@api``, adapters, artifacts, ``pack``, ``save``, ``save_to_dir``, ``load``.

    >>> from dosirak import env, artifacts, api, BentoService
    >>> from dosirak.adapters import DataframeInput
    >>> from dosirak.frameworks.sklearn import SklearnModelArtifact

``dosirak.api`` is one name for both styles: called with 0.x arguments (an adapter, ``batch=``,
``mb_max_*``) it is this layer's ``@api`` (``dosirak.legacy.service.api``); otherwise the
decorator of ``@dosirak.service`` classes. A saved 0.x service is a bento: ``dosirak serve``,
``run``, ``containerize`` take it by tag. ``dosirak import``/``migrate``/``serve PATH`` read
directories saved by BentoML 0.13 itself (``dosirak.legacy.migrate``).
"""

from dosirak.legacy.bundle import load
from dosirak.legacy.environment import env
from dosirak.legacy.service import BentoService, api, artifacts, ver, web_static_content

__all__ = ["BentoService", "api", "artifacts", "env", "load", "ver", "web_static_content"]
