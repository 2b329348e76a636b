"""A compose file (Docker Compose, podman-compose) that runs a bento's image on one machine.

    >>> text = compose_file(ComposeOptions(name="iris-classifier", image="iris:1", ...))

The port is published on 127.0.0.1 unless ``--host`` says otherwise; the health check is the
image's own (``/readyz``); ``docker compose down`` stops it with the server's graceful drain
(``stop_grace_period`` longer than the server's graceful timeout).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dosirak.deploy.dockerfile import PORT, PYTHON
from dosirak.exceptions import InvalidArgument

_SERVICE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")


@dataclass
class ComposeOptions:
    name: str
    image: str
    bento_tag: str
    port: int = PORT
    host: str = "127.0.0.1"
    graceful_timeout: float = 30.0
    memory: str | None = None


def compose_document(options: ComposeOptions) -> dict[str, Any]:
    if not _SERVICE_NAME.fullmatch(options.name):
        raise InvalidArgument(f"service name {options.name!r} is not valid for compose: "
                              "lower-case letters, digits, '-', '_' and '.'")
    if not 1 <= options.port <= 65535:
        raise InvalidArgument(f"--port {options.port} is not a TCP port (1-65535)")
    service: dict[str, Any] = {
        "image": options.image,
        "restart": "unless-stopped",
        "ports": [{"target": PORT, "published": str(options.port), "host_ip": options.host,
                   "protocol": "tcp"}],
        "environment": {"PORT": str(PORT), "DOSIRAK_HOST": "0.0.0.0"},
        "healthcheck": {"test": [PYTHON, "-m", "dosirak.deploy.healthcheck"],
                        "interval": "10s", "timeout": "5s", "retries": 3,
                        "start_period": "60s"},
        "stop_signal": "SIGTERM",
        "stop_grace_period": f"{int(options.graceful_timeout + 0.999) + 10}s",
        "labels": {"dev.dosirak.bento.tag": options.bento_tag},
    }
    if options.memory:
        service["mem_limit"] = options.memory
    return {"name": options.name, "services": {options.name: service}}


def compose_file(options: ComposeOptions) -> str:
    from dosirak.store.versioned_store import dump_yaml

    return dump_yaml(compose_document(options))
