"""``bentofile.yaml``: what a bento is built from, validated before anything is copied.

    service: "service.py:svc"
    name: iris_classifier
    include: ["*.py"]
    models: ["iris_clf:latest"]

The same keys may live in ``pyproject.toml`` under ``[tool.dosirak.bento]``. Unknown keys are
refused with a did-you-mean, as the serving configuration does.
"""

from __future__ import annotations

import os
import posixpath
import re
import tomllib
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dosirak.config import _did_you_mean, _Section, _short, _string_list, _unwrap
from dosirak.exceptions import InvalidArgument
from dosirak.tag import Tag

BENTOFILE = "bentofile.yaml"
PYPROJECT = "pyproject.toml"
# "pkg.module:svc" or "dir/module.py:svc" (a file relative to the build directory).
_SERVICE = re.compile(r"(?:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*|(?:[\w.-]+/)*[A-Za-z_]\w*\.py)"
                      r":[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


class _Keys(_Section):
    # `OMP_NUM_THREADS: 1` and `version: 2` mean strings in labels and environment variables.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class PythonOptions(_Section):
    """``python:``: the packages the service needs, and how pip should find them."""

    packages: list[str] = Field(default_factory=list,
                                description="pip requirement specifiers, e.g. 'scikit-learn>=1.3'")
    requirements_txt: str | None = Field(None, description="a requirements file in the build "
                                                           "directory, read into the bento")
    lock: bool = Field(True, description="pin every requirement to the version installed in "
                                         "the build environment")
    index_url: str | None = None
    extra_index_url: list[str] = Field(default_factory=list)
    find_links: list[str] = Field(default_factory=list)
    wheels: list[str] = Field(default_factory=list,
                              description="wheel files in the build directory")

    _lists = field_validator("packages", "extra_index_url", "find_links", "wheels",
                             mode="before")(_string_list)


class DockerOptions(_Keys):
    """``docker:``: recorded in the bento now, used when it is containerized."""

    distro: str | None = None
    python_version: str | None = None
    system_packages: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    setup_script: str | None = None
    base_image: str | None = None
    dockerfile_template: str | None = None

    _lists = field_validator("system_packages", mode="before")(_string_list)


class ModelReference(_Section):
    """One model the bento uses: its tag, and optionally the name the service knows it by."""

    tag: str
    alias: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        return {"tag": data} if isinstance(data, str) else data

    @field_validator("tag")
    @classmethod
    def _valid_tag(cls, tag: str) -> str:
        _as_value_error(Tag.parse, tag)
        return tag


class DescriptionFile(_Section):
    """``description: {file: ./README.md}``: the description is read from that file."""

    file: str


class EnvVar(_Keys):
    """One environment variable set when the bento is served."""

    name: str
    value: str = ""


class Bentofile(_Keys):
    """The whole bentofile; only ``service`` is required."""

    service: str = Field(description="the service to serve, 'module:attribute' or "
                                     "'file.py:attribute', relative to the build directory")
    name: str | None = Field(None, description="the bento's name (default: the build "
                                               "directory's name)")
    description: str | DescriptionFile | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    include: list[str] = Field(default_factory=lambda: ["*"],
                               description="gitignore-style patterns of the files to ship")
    exclude: list[str] = Field(default_factory=list,
                               description="gitignore-style patterns of the files to leave out")
    python: PythonOptions = Field(default_factory=PythonOptions)
    docker: DockerOptions = Field(default_factory=DockerOptions)
    models: list[ModelReference] = Field(default_factory=list)
    envs: list[EnvVar] = Field(default_factory=list)

    _lists = field_validator("include", "exclude", mode="before")(_string_list)

    @field_validator("service")
    @classmethod
    def _service(cls, service: str) -> str:
        if not _SERVICE.fullmatch(service):
            raise ValueError(f"{service!r} is not 'module:attribute'; write e.g. "
                             "'service:svc' or 'service.py:svc'")
        check_inside(service.partition(":")[0])
        return service

    def service_files(self) -> tuple[str, ...]:
        """The files (relative posix paths) that may hold the service's module."""
        module = self.service.partition(":")[0]
        if module.endswith(".py"):
            return (posixpath.normpath(module),)
        path = module.replace(".", "/")
        return (f"{path}.py", f"{path}/__init__.py")

    @field_validator("name")
    @classmethod
    def _name(cls, name: str | None) -> str | None:
        if name is not None:
            _as_value_error(Tag, name)
        return name

    @field_validator("include", "exclude")
    @classmethod
    def _inside(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            check_inside(pattern)
        return patterns


def _as_value_error(check: Any, value: str) -> None:
    # pydantic reports ValueErrors with their location; dosirak's own errors would escape it.
    try:
        check(value)
    except InvalidArgument as error:
        raise ValueError(str(error)) from None


def check_inside(pattern: str) -> None:
    """Refuse a pattern or path that reaches outside the build directory."""
    parts = pattern.replace("\\", "/").lstrip("!").split("/")
    if ".." in parts or pattern.lstrip("!").startswith("~"):
        raise ValueError(f"{pattern!r} reaches outside the build directory; patterns and "
                         "paths are relative to it (write 'data/*.csv', not '../data')")


# --- reading ---------------------------------------------------------------------------------


def load_bentofile(directory: Path, path: str | os.PathLike[str] | None = None) -> Bentofile:
    """The bentofile of a build: ``path`` if given, else ``directory/bentofile.yaml``, else the
    ``[tool.dosirak.bento]`` table of ``directory/pyproject.toml``.

    Raises ``InvalidArgument`` listing every problem, each with how to fix it.
    """
    if path is not None:
        file = Path(path)
        data = _read_toml(file) if file.suffix == ".toml" else _read_yaml(file)
        if data is None and file.suffix == ".toml":
            raise InvalidArgument(f"{file} has no [tool.dosirak.bento] table; add one with at "
                                  "least `service = \"service.py:svc\"`")
    elif (directory / BENTOFILE).is_file():
        file = directory / BENTOFILE
        data = _read_yaml(file)
    elif (directory / PYPROJECT).is_file() and (table := _read_toml(directory / PYPROJECT)):
        file, data = directory / PYPROJECT, table
    else:
        raise InvalidArgument(f"no {BENTOFILE} in {directory} (nor a [tool.dosirak.bento] table "
                              f"in its {PYPROJECT}); write one with at least "
                              "`service: \"service.py:svc\"`, or pass -f BENTOFILE")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidArgument(f"{file} must hold a mapping of keys (service:, include: ...), "
                              f"not a {type(data).__name__}")
    try:
        return Bentofile.model_validate(data)
    except ValidationError as error:
        raise InvalidArgument(_explain(error, file)) from None


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidArgument(f"bentofile {file} does not exist; check the path given "
                              "with -f") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidArgument(f"bentofile {file} cannot be read: {error}") from None


def _read_yaml(file: Path) -> Any:
    try:
        return yaml.safe_load(_read_text(file))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise InvalidArgument(f"bentofile {file} is not valid YAML{where}: {problem}") from None


def _read_toml(file: Path) -> Any:
    try:
        document = tomllib.loads(_read_text(file))
    except tomllib.TOMLDecodeError as error:
        raise InvalidArgument(f"{file} is not valid TOML: {error}") from None
    return document.get("tool", {}).get("dosirak", {}).get("bento")


def _explain(error: ValidationError, file: Path) -> str:
    lines = []
    for problem in error.errors(include_url=False):
        loc = tuple(str(part) for part in problem["loc"])
        key = ".".join(loc) or "(top level)"
        if problem["type"] == "extra_forbidden":
            valid = _valid_keys(loc[:-1])
            level = f"under {'.'.join(loc[:-1])}" if loc[:-1] else "at the top level"
            lines.append(f"{key}: unknown key{_did_you_mean(loc[-1], valid)}; valid keys "
                         f"{level}: {', '.join(valid)}")
        elif problem["type"] == "missing":
            lines.append(f"{key}: missing, it is required; add it to {file.name}")
        else:
            message = problem["msg"].removeprefix("Value error, ")
            value = problem.get("input")
            shown = "" if isinstance(value, dict) else f" = {_short(value)}"
            lines.append(f"{key}{shown}: {message}")
    return f"invalid bentofile {file}: " + "; ".join(lines)


def _valid_keys(loc: tuple[str, ...]) -> list[str]:
    """The keys a mapping at ``loc`` may hold (list indexes and union members followed)."""
    model: Any = Bentofile
    for part in loc:
        if part.isdigit() or not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        info = model.model_fields.get(part)
        if info is None:  # a union member's name (``description.DescriptionFile``)
            continue
        model = _model_in(info.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return sorted(model.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    """The pydantic model inside ``list[M]``, ``M | None`` or ``str | M``, else the annotation."""
    annotation = _unwrap(annotation)
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return annotation
