"""What an offline command runs: a service named the way ``dosirak serve`` names it, or a
generic service config file.

    >>> load_target("service:svc")              # module:attribute, file.py:attribute, directory
    >>> load_target("iris.yaml")                # a generic service config (.yaml, .yml, .json)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dosirak.exceptions import InvalidArgument

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
_SERVE_FILES = ("bentofile.yaml",)


def is_config_target(target: str) -> bool:
    """True when ``target`` names a generic service config file."""
    path = Path(target)
    return path.suffix.lower() in CONFIG_SUFFIXES and path.name not in _SERVE_FILES


def load_target(target: str) -> Any:
    """The ``dosirak.Service`` that ``target`` names."""
    if is_config_target(target):
        if not Path(target).is_file():
            raise InvalidArgument(f"target {target!r} looks like a generic service config but "
                                  "there is no such file; check the path")
        from dosirak.generic import build_service

        return build_service(target)
    from dosirak.target import load_service

    return load_service(target)
