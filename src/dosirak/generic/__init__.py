"""The generic service: serve stored models from a config file, with no Python of your own.

    $ CONFIG_PATH=iris.yaml dosirak serve dosirak.generic:svc
    >>> svc = dosirak.generic.build_service("iris.yaml")

``svc`` is built from the file ``$CONFIG_PATH`` names the first time it is read (importing this
module builds nothing). The config format is in ``dosirak.generic.config``.
"""

from __future__ import annotations

import os
from typing import Any

from dosirak.exceptions import InvalidArgument
from dosirak.generic.config import (
    CONFIG_ENV,
    EndpointConfig,
    GenericServiceConfig,
    load_config,
    parse_config,
)
from dosirak.generic.envelope import Envelope
from dosirak.generic.service import build_service


def __getattr__(name: str) -> Any:
    if name == "svc":
        path = os.environ.get(CONFIG_ENV)
        if not path:
            raise InvalidArgument(f"dosirak.generic:svc is built from the config file that "
                                  f"${CONFIG_ENV} names, and {CONFIG_ENV} is not set; run e.g. "
                                  f"{CONFIG_ENV}=service.yaml dosirak serve dosirak.generic:svc")
        service = build_service(path)
        globals()["svc"] = service  # built once per process
        return service
    raise AttributeError(f"module 'dosirak.generic' has no attribute {name!r}")


__all__ = ["CONFIG_ENV", "EndpointConfig", "Envelope", "GenericServiceConfig", "build_service",
           "load_config", "parse_config"]
