"""JSON: any JSON document, optionally validated by a pydantic model or a typed annotation.

    >>> class Features(pydantic.BaseModel):
    ...     sepal_length: float
    ...     sepal_width: float
    >>> @svc.api(input=JSON(pydantic_model=Features), output=JSON())
    ... def predict(features: Features) -> dict: ...

With a pydantic model the API function receives a model instance, validated in one pass over the
body (pydantic parses the JSON itself); a failure is a 400 listing every wrong field. Any other
type (``list[float]``, ``dict[str, int]``, a dataclass, a TypedDict) is validated the same way
through a pydantic ``TypeAdapter`` built once, when the API is declared.
"""

from __future__ import annotations

from typing import Any

from dosirak.exceptions import BadInput, InvalidArgument
from dosirak.io.base import JSON_MEDIA_TYPE, IODescriptor
from dosirak.io.encoding import dumps, loads, to_jsonable

_REF_TEMPLATE = "#/components/schemas/{model}"


class JSON(IODescriptor):
    """A JSON document in, or any JSON-encodable value out.

    ``pydantic_model`` may be a ``pydantic.BaseModel`` subclass or any type pydantic validates.
    Output values may be dicts, lists, numbers, strings, numpy arrays, pandas objects, pydantic
    models and dataclasses; NaN and infinities are written as ``null``.
    """

    python_type = "Any (JSON)"

    def __init__(self, pydantic_model: Any = None) -> None:
        self.pydantic_model = pydantic_model
        self._adapter: Any = None
        self._is_model = False
        self._schema: dict[str, Any] = {}
        self._components: dict[str, dict[str, Any]] = {}
        if pydantic_model is not None:
            self._prepare(pydantic_model)
        self._validate = pydantic_model is not None

    def _prepare(self, target: Any) -> None:
        try:
            import pydantic
        except ImportError:  # pragma: no cover - pydantic is a dependency
            raise InvalidArgument("JSON(pydantic_model=...) needs pydantic: pip install "
                                  "pydantic") from None
        self._is_model = isinstance(target, type) and issubclass(target, pydantic.BaseModel)
        try:
            self._adapter = None if self._is_model else pydantic.TypeAdapter(target)
            schema = (target.model_json_schema(ref_template=_REF_TEMPLATE) if self._is_model
                      else self._adapter.json_schema(ref_template=_REF_TEMPLATE))
        except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError,
                TypeError) as error:
            raise InvalidArgument(f"JSON: pydantic cannot validate {target!r}: {error}") from None
        definitions = schema.pop("$defs", {})
        if self._is_model:
            # The model itself becomes a named component, so the docs show its name.
            definitions[target.__name__] = schema
            schema = {"$ref": _REF_TEMPLATE.format(model=target.__name__)}
        self._schema = schema
        self._components = definitions

    @classmethod
    def from_sample(cls, sample: Any) -> JSON:
        """A descriptor for values like ``sample``; a pydantic instance sets the model too."""
        model = type(sample) if hasattr(type(sample), "model_json_schema") else None
        descriptor = cls(pydantic_model=model)
        descriptor.sample = sample
        return descriptor

    # ----- reading ------------------------------------------------------------------------

    def parse(self, body: bytes | bytearray, media_type: str, params: dict[str, str]) -> Any:
        if not self._validate:
            return loads(body)
        # pydantic's own parser reads NaN, Infinity and numbers past the double range (as
        # infinities), none of which is JSON and all of which crash models: orjson's strict
        # read refuses them first, for about a third of the validation's cost.
        loads(body)
        try:
            if self._is_model:
                return self.pydantic_model.model_validate_json(body)
            return self._adapter.validate_json(body)
        except Exception as error:
            raise _validation_error(error, ["body"]) from None

    def from_json_value(self, value: Any) -> Any:
        if not self._validate:
            return value
        try:
            if self._is_model:
                return self.pydantic_model.model_validate(value)
            return self._adapter.validate_python(value)
        except Exception as error:
            raise _validation_error(error, []) from None

    # ----- writing ------------------------------------------------------------------------

    def render(self, value: Any, media_type: str) -> tuple[bytes, str]:
        dump_json = getattr(value, "model_dump_json", None)
        if dump_json is not None and hasattr(type(value), "model_fields"):
            return dump_json().encode("utf-8"), JSON_MEDIA_TYPE
        return dumps(value), JSON_MEDIA_TYPE

    # ----- describing ---------------------------------------------------------------------

    def schema(self) -> dict[str, Any]:
        return dict(self._schema)

    def components(self) -> dict[str, dict[str, Any]]:
        return dict(self._components)

    def example(self) -> Any:
        return None if self.sample is None else to_jsonable(self.sample)

    def to_spec(self) -> dict[str, Any]:
        model = self.pydantic_model
        name = None if model is None else getattr(model, "__qualname__", repr(model))
        return {"type": "JSON", "pydantic_model": name, "schema": self._schema,
                "components": self._components}


Json = JSON  # the seeds' spelling


def _validation_error(error: Exception, loc: list[Any]) -> BadInput:
    errors = getattr(error, "errors", None)
    if errors is None:
        raise error  # not a validation error: a bug, let the server log it
    items = errors(include_url=False, include_context=False, include_input=False)
    if items and items[0].get("type") == "json_invalid":
        message = items[0].get("msg", "invalid JSON")
        return BadInput(f"malformed JSON: {message}",
                        [{"loc": ["body"], "msg": message, "type": "json_invalid"}])
    detail = [{"loc": [*loc, *item.get("loc", ())], "msg": item.get("msg", ""),
               "type": item.get("type", "value_error")} for item in items]
    fields = ", ".join(".".join(str(p) for p in item["loc"][len(loc):]) or "(the body)"
                       for item in detail)
    return BadInput(f"{len(detail)} validation error(s): {fields}", detail)
