"""``dosirak.service``: the ``@dosirak.service`` class decorator, and the package of BentoML 0.x's
``dosirak.service.artifacts.common`` import path.

Importing ``dosirak.service.artifacts.common`` makes this package the ``dosirak.service``
attribute; the module is callable so that ``@dosirak.service`` keeps working either way.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from dosirak.service_class import service

        return service(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
