"""``@env``: what a 0.x service needs installed, turned into a bento's environment.

    >>> @env(infer_pip_packages=True)                    # the packages the module imports
    >>> @env(pip_packages=["scikit-learn==1.5.0"], docker_base_image="python:3.11-slim")
    >>> @env(requirements_txt_file="./requirements.txt", setup_sh="apt-get install -y libgomp1")

``pip_packages`` and ``requirements_txt_file`` become the bento's Python requirements (pinned in
its lock like any bento's), ``docker_base_image`` and ``setup_sh`` its docker options. Conda has no
place in a dosirak bento: ``conda_*`` options are recorded in ``bentoml.yml`` and reported when
the service is saved, not installed.
"""

from __future__ import annotations

import ast
import importlib.metadata
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dosirak.exceptions import InvalidArgument

_log = logging.getLogger("dosirak.legacy")
_CONDA = ("conda_channels", "conda_dependencies", "conda_env_yml_file",
          "conda_overwrite_channels")


@dataclass
class BentoServiceEnv:
    """The environment a 0.x service declares with ``@env``."""

    pip_packages: list[str] = field(default_factory=list)
    infer_pip_packages: bool = False
    requirements_txt_file: str | None = None
    docker_base_image: str | None = None
    setup_sh: str | None = None
    pip_index_url: str | None = None
    pip_extra_index_url: str | None = None
    conda: dict[str, Any] = field(default_factory=dict)

    def add_pip_packages(self, packages: Any) -> None:
        for package in packages or ():
            name = _requirement_name(package)
            if all(_requirement_name(known) != name for known in self.pip_packages):
                self.pip_packages.append(package)

    def requirements(self, module_file: Path | None) -> list[str]:
        """The Python requirements: declared, from the requirements file, and inferred."""
        found = list(self.pip_packages)
        if self.requirements_txt_file:
            path = Path(self.requirements_txt_file)
            if not path.is_file():
                raise InvalidArgument(f"@env(requirements_txt_file={str(path)!r}): no such file "
                                      f"(relative to {Path.cwd()}); fix the path")
            found += [line.split(" #")[0].strip()
                      for line in path.read_text(encoding="utf-8").splitlines()
                      if line.strip() and not line.lstrip().startswith(("#", "-"))]
        if self.infer_pip_packages and module_file is not None:
            for package in infer_packages(module_file):
                if all(_requirement_name(r) != _requirement_name(package) for r in found):
                    found.append(package)
        return found

    def to_dict(self, requirements: list[str]) -> dict[str, Any]:
        """The ``env`` section of ``bentoml.yml``."""
        data: dict[str, Any] = {"pip_packages": requirements,
                                "python_version": ".".join(map(str, sys.version_info[:3])),
                                "infer_pip_packages": self.infer_pip_packages}
        for key in ("docker_base_image", "setup_sh", "requirements_txt_file", "pip_index_url",
                    "pip_extra_index_url"):
            if getattr(self, key):
                data[key] = getattr(self, key)
        if self.conda:
            data["conda_env"] = dict(self.conda)
        return data


def env(pip_packages: list[str] | None = None, pip_dependencies: list[str] | None = None,
        infer_pip_packages: bool = False, auto_pip_dependencies: bool | None = None,
        requirements_txt_file: str | None = None, docker_base_image: str | None = None,
        setup_sh: str | None = None, pip_index_url: str | None = None,
        pip_trusted_host: str | None = None, pip_extra_index_url: str | None = None,
        zipimport_archives: list[str] | None = None, **conda: Any) -> Any:
    """Declare the environment of a ``BentoService`` class (BentoML 0.x's ``@env``)."""
    unknown = sorted(set(conda) - set(_CONDA))
    if unknown:
        raise InvalidArgument(f"@env got unknown options {unknown}; it takes pip_packages, "
                              "infer_pip_packages, requirements_txt_file, docker_base_image, "
                              f"setup_sh, pip_index_url, pip_extra_index_url and {_CONDA}")
    packages = pip_packages or pip_dependencies or []
    if not isinstance(packages, (list, tuple)) or not all(isinstance(p, str) for p in packages):
        raise InvalidArgument(f"@env(pip_packages=...) must be a list of requirement strings "
                              f"such as ['scikit-learn>=1.3'], got {packages!r}")
    if conda:
        _log.warning("@env(%s): conda is not part of a dosirak bento; recorded in bentoml.yml "
                     "but not installed (list the packages in pip_packages instead)",
                     ", ".join(sorted(conda)))
    declared = BentoServiceEnv(
        pip_packages=list(packages),
        infer_pip_packages=bool(infer_pip_packages or auto_pip_dependencies),
        requirements_txt_file=requirements_txt_file, docker_base_image=docker_base_image,
        setup_sh=setup_sh, pip_index_url=pip_index_url, pip_extra_index_url=pip_extra_index_url,
        conda={key: value for key, value in conda.items() if value})

    def decorate(cls: type) -> type:
        _check_class(cls, "@env")
        cls._env = declared
        return cls

    return decorate


def _check_class(cls: Any, decorator: str) -> None:
    from dosirak.legacy.service import BentoService

    if not (isinstance(cls, type) and issubclass(cls, BentoService)):
        raise InvalidArgument(f"{decorator} decorates subclasses of dosirak.BentoService, got "
                              f"{cls!r}; for @dosirak.service classes declare models as class "
                              "attributes and the environment in bentofile.yaml")


def _requirement_name(requirement: str) -> str:
    for stop in "<>=!~;[ @":
        requirement = requirement.split(stop)[0]
    return requirement.strip().lower().replace("_", "-")


def infer_packages(module_file: Path) -> list[str]:
    """The installed distributions that the module's top-level imports come from, pinned to
    their installed versions (``scikit-learn==1.5.0``); the standard library and dosirak are
    left out."""
    tree = ast.parse(module_file.read_text(encoding="utf-8"), str(module_file))
    tops: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            tops.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            tops.add(node.module.split(".")[0])
    local = {path.stem for path in module_file.parent.glob("*.py")}
    distributions = importlib.metadata.packages_distributions()
    found: dict[str, str] = {}
    for top in sorted(tops - set(sys.stdlib_module_names) - local - {"dosirak", "bentoml"}):
        for name in distributions.get(top, []):
            try:
                found[name.lower()] = f"{name}=={importlib.metadata.version(name)}"
            except importlib.metadata.PackageNotFoundError:
                continue
    return sorted(found.values())
