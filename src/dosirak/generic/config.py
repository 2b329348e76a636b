"""The configuration file of a generic service: which models to serve, how, and where.

    # iris.yaml
    service: iris_generic
    endpoints:
      - name: classify
        model: iris_clf:latest
        method: predict            # default: the model's own signatures decide
        input: NumpyNdarray        # or {type: NumpyNdarray, dtype: float32, shape: [-1, 4]}
        output: JSON
        route: /classify           # default: /<name>
        envelope: true             # {"success": ..., "message": ..., "result": ...}

JSON or YAML (by extension; other names are tried as YAML, which also reads JSON). The flat form
of the seed's own config (``service_name``, ``model_name``, ``framework``, ``input_type``,
``output_type``) is read as a service with one endpoint named ``predict``. Every problem is
reported at once as an ``InvalidArgument`` naming the field (``endpoints[0].input``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dosirak.exceptions import InvalidArgument
from dosirak.tag import NAME_PATTERN

#: The IO descriptors a generic endpoint may use (the seed's list).
IO_TYPES = ("NumpyNdarray", "PandasDataFrame", "PandasSeries", "JSON", "Text", "Image")
CONFIG_ENV = "CONFIG_PATH"  # the seed's variable name
_SEED_KEYS = {"service_name", "model_name", "model", "framework", "input_type", "output_type",
              "method", "route", "envelope"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class IOConfig(_Strict):
    """An input or output type, with the descriptor's options (``dtype``, ``shape``, ``orient``)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: Literal["NumpyNdarray", "PandasDataFrame", "PandasSeries", "JSON", "Text", "Image"]

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value

    @property
    def options(self) -> dict[str, Any]:
        """The options passed to the descriptor's constructor."""
        return dict(self.model_extra or {})


class BatchingConfig(_Strict):
    """How concurrent requests of a batchable method are merged (see the runner's dispatcher)."""

    max_batch_size: int | None = Field(None, ge=1, description="Rows per batch at most.")
    max_latency_ms: float | None = Field(None, gt=0, description="Latency budget of a call.")
    enabled: bool = Field(True, description="False calls the model once per request.")


class EndpointConfig(_Strict):
    """One API of the generic service: a stored model's method behind a route."""

    name: str = Field("predict", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                      description="The API's name (a Python identifier).")
    model: str = Field(validation_alias=AliasChoices("model", "model_name", "model_tag"),
                       min_length=1, description="The stored model's tag, e.g. iris_clf:latest.")
    framework: str | None = Field(None, description="Optional check: the framework that must "
                                  "have saved the model (sklearn, pytorch ...).")
    method: str | None = Field(None, description="The model method to call; default from the "
                               "model's signatures.")
    input: IOConfig = Field(IOConfig(type="NumpyNdarray"),
                            validation_alias=AliasChoices("input", "input_type"))
    output: IOConfig = Field(IOConfig(type="NumpyNdarray"),
                             validation_alias=AliasChoices("output", "output_type"))
    route: str | None = Field(None, description="The HTTP path; default /<name>.")
    envelope: bool = Field(True, description="Wrap answers in {success, message, result}.")
    dtype: str | None = Field(None, description="Cast the model's input to this numpy dtype; "
                              "default float32 for tensor frameworks, nothing otherwise.")
    batching: BatchingConfig = BatchingConfig()
    doc: str | None = None

    @field_validator("framework")
    @classmethod
    def _short_framework(cls, value: str | None) -> str | None:
        return None if value is None else value.removeprefix("dosirak.").lower()


class GenericServiceConfig(_Strict):
    """A generic service: a name and its endpoints."""

    service: str = Field(validation_alias=AliasChoices("service", "name", "service_name"),
                         pattern=f"^{NAME_PATTERN}$",
                         description="The service name (lowercase, e.g. iris_generic).")
    endpoints: list[EndpointConfig] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _seed_form(cls, value: Any) -> Any:
        """The seed's flat config is one endpoint; its keys move into ``endpoints[0]``."""
        if isinstance(value, dict) and "endpoints" not in value and (
                "model_name" in value or "model" in value):
            flat = dict(value)
            endpoint = {key: flat.pop(key) for key in list(flat)
                        if key in _SEED_KEYS - {"service_name"}}
            flat["endpoints"] = [endpoint]
            return flat
        return value

    @model_validator(mode="after")
    def _unique(self) -> GenericServiceConfig:
        names = [endpoint.name for endpoint in self.endpoints]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"endpoint names must be unique; {duplicates} repeat: give each "
                             "endpoint its own name")
        return self


def load_config(path: str | Path) -> GenericServiceConfig:
    """Read and validate a generic service config file (JSON or YAML)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidArgument(f"cannot read the generic service config {path}: "
                              f"{error.strerror or error}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise InvalidArgument(f"the generic service config {path} is not valid "
                              f"{'JSON' if path.suffix.lower() == '.json' else 'YAML'}: "
                              f"{error}") from None
    return parse_config(data, source=str(path))


def parse_config(data: Any, *, source: str = "the config") -> GenericServiceConfig:
    """Validate already loaded config data; errors name every wrong field."""
    if not isinstance(data, dict):
        raise InvalidArgument(f"{source} must be a mapping with 'service' and 'endpoints', "
                              f"got {type(data).__name__}")
    try:
        return GenericServiceConfig.model_validate(data)
    except ValidationError as error:
        raise InvalidArgument(describe_errors(error, source)) from None


def describe_errors(error: ValidationError, source: str) -> str:
    """One line per problem: ``endpoints[0].input.type: Input should be 'NumpyNdarray', ...``."""
    lines = []
    for item in error.errors(include_url=False):
        where = field_path(item.get("loc", ()))
        value = item.get("input")
        shown = "" if item.get("type") == "missing" or isinstance(value, dict) \
            else f" (got {value!r})"
        lines.append(f"  {where or '(the file)'}: {item.get('msg', 'invalid')}{shown}")
    return f"{source} is not a valid generic service config:\n" + "\n".join(lines)


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``('endpoints', 0, 'input')`` as ``endpoints[0].input``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part not in ("function-before[_from_name(), IOConfig]",):
            text += f".{part}" if text else str(part)
    return text
