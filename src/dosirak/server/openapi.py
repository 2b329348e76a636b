"""The OpenAPI 3.0 document of a service, built once from its APIs' descriptors.

Each API is one ``POST`` operation: its request body and 200 response come from the input and
output descriptors (schemas, and examples from their samples), its description from the
docstring, and every error status the server can answer is documented with its JSON body. The
document is OpenAPI 3.0 because the bundled Swagger UI renders 3.0; pydantic's JSON Schema
(2020-12) is converted where the two differ (``null`` types, ``const``, ``examples``).
"""

from __future__ import annotations

from typing import Any

from dosirak.__about__ import __version__
from dosirak.io.keyed import NO_DEFAULT, keyed_parser
from dosirak.server.errors import ERROR_SCHEMA, VALIDATION_ERROR_SCHEMA
from dosirak.server.streaming import EVENT_STREAM, stream_media_type
from dosirak.services import InferenceAPI, Service

OPENAPI_VERSION = "3.0.3"
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_VALIDATION_REF = {"$ref": "#/components/schemas/ValidationError"}


def _error(description: str, ref: dict[str, str] = _ERROR_REF) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": dict(ref)}}}


_API_ERRORS = {
    "400": _error("The body is malformed or fails validation; detail names the field or axis",
                  _VALIDATION_REF),
    "413": _error("The body is larger than the server accepts"),
    "415": _error("The Content-Type is not one this API reads"),
    "500": _error("The API raised an exception; the server log has it under request_id"),
    "503": _error("The service is overloaded; retry after Retry-After seconds"),
}


def _api_errors(output: Any) -> dict[str, Any]:
    """The error responses of an API: the server's bodies, or the ones its output reshapes."""
    schema = output.error_schema()
    if schema is None:
        return _API_ERRORS
    return {status: {"description": entry["description"],
                     "content": {"application/json": {"schema": schema_30(schema)}}}
            for status, entry in _API_ERRORS.items()}


def build_openapi(svc: Service) -> dict[str, Any]:
    """The OpenAPI document of ``svc`` as plain data."""
    components: dict[str, Any] = {"Error": ERROR_SCHEMA,
                                  "ValidationError": VALIDATION_ERROR_SCHEMA}
    paths: dict[str, Any] = {}
    for api in svc.apis.values():
        for descriptor in (api.input, api.output):
            components.update(descriptor.components())
        operation: dict[str, Any] = {
            "tags": ["Service APIs"],
            "operationId": api.name,
            "summary": _summary(api.description) or f"Call {api.name}",
            "requestBody": _request_body(api),
            "responses": {"200": _response(api), **_api_errors(api.output)},
        }
        _convert_content(operation["requestBody"]["content"])
        _convert_content(operation["responses"]["200"].get("content", {}))
        if api.description:
            operation["description"] = api.description
        paths[api.route] = {"post": operation}
    paths.update(_infrastructure_paths())
    document = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": svc.name, "version": __version__,
                 "description": _service_description(svc)},
        "tags": [{"name": "Service APIs", "description": "The inference APIs of this service"},
                 {"name": "Infrastructure", "description": "Health checks"}],
        "paths": paths,
        "components": {"schemas": {name: schema_30(schema)
                                   for name, schema in components.items()}},
    }
    return document


def _response(api: InferenceAPI) -> dict[str, Any]:
    if not api.streaming:
        return api.output.openapi_response()
    # A stream of items: one schema per item; clients iterate (x-dosirak-stream).
    item = api.output.schema() if hasattr(api.output, "schema") else {}
    return {"description": "A stream of items, sent as they are made (chunked); server-sent "
                           "events with Accept: text/event-stream",
            "x-dosirak-stream": True,
            "content": {stream_media_type(api.output): {"schema": item},
                        EVENT_STREAM: {"schema": {"type": "string"}}}}


def _request_body(api: InferenceAPI) -> dict[str, Any]:
    body = api.input.openapi_request_body()
    if api.parameter is None:
        return body
    keyed = api.keyed and keyed_parser(api.input, api.parameter,
                                       api.parameter_default) is not None
    required = not keyed or api.parameter_default is NO_DEFAULT
    # Clients take the parameter as a keyword argument; a keyed API also reads the 1.2 body.
    body["x-dosirak-parameter"] = {"name": api.parameter, "required": required, "keyed": keyed}
    content = body.setdefault("content", {})
    if keyed and "application/json" not in content:  # Text and the like: JSON only keyed
        content["application/json"] = {"schema": {
            "type": "object", "properties": {api.parameter: api.input.schema()},
            **({"required": [api.parameter]} if required else {})}}
    if keyed:
        body["description"] = (f"The value of `{api.parameter}`: bare, or as the JSON object "
                               f"`{{\"{api.parameter}\": value}}`" +
                               ("" if required else " (`{}` takes the default)"))
    return body


def _summary(description: str) -> str:
    return description.strip().splitlines()[0] if description.strip() else ""


def _service_description(svc: Service) -> str:
    doc = svc.__doc__ if svc.__doc__ != Service.__doc__ else None
    lines = [doc.strip() if doc else f"The **{svc.name}** prediction service, served by "
             "dosirak."]
    if svc.runners:
        lines.append("Runners: " + ", ".join(f"`{r.name}`" for r in svc.runners) + ".")
    return "\n\n".join(lines)


def _infrastructure_paths() -> dict[str, Any]:
    text = {"text/plain": {"schema": {"type": "string"}}}

    def probe(summary: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        responses = {"200": {"description": "OK", "content": text}, **(extra or {})}
        return {"get": {"tags": ["Infrastructure"], "summary": summary, "responses": responses}}

    return {
        "/livez": probe("Liveness: the server process answers"),
        "/healthz": probe("Liveness (alias of /livez)"),
        "/readyz": probe("Readiness: every runner is ready to take calls",
                         {"503": {"description": "Not ready yet", "content": text}}),
    }


_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_ONES = ("items", "additionalProperties", "not", "contains", "propertyNames")


def schema_30(schema: Any) -> Any:
    """Rewrite JSON Schema 2020-12 constructs that OpenAPI 3.0 lacks, recursively.

    Only schema positions are walked: example values, defaults and enums stay as they are.
    """
    if not isinstance(schema, dict):
        return schema
    result: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            result[key] = {name: schema_30(item) for name, item in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            result[key] = [schema_30(item) for item in value]
        elif key in _SCHEMA_ONES:
            result[key] = schema_30(value)
        else:
            result[key] = value
    for key in ("anyOf", "oneOf"):
        options = result.get(key)
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [option for option in options if option != {"type": "null"}]
            result.pop(key)
            if len(rest) == 1 and "$ref" not in rest[0]:
                result.update(rest[0])
            elif len(rest) == 1:
                result["allOf"] = rest
            else:
                result[key] = rest
            result["nullable"] = True
    kind = result.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if len(kinds) < len(kind):
            result["nullable"] = True
        if len(kinds) == 1:
            result["type"] = kinds[0]
        else:
            result.pop("type")
            result["anyOf"] = [{"type": k} for k in kinds]
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        value = result.get(exclusive)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            result[bound] = value  # 3.0 spells "> 0" as minimum 0 with a boolean flag
            result[exclusive] = True
    if "const" in result:
        result["enum"] = [result.pop("const")]
    if isinstance(result.get("examples"), list):
        examples = result.pop("examples")
        if examples and "example" not in result:
            result["example"] = examples[0]
    if "prefixItems" in result:  # tuples: 3.0 can only say "this many items of these kinds"
        items = result.pop("prefixItems")
        result.setdefault("items", {"anyOf": items} if items else {})
        result.setdefault("minItems", len(items))
        result.setdefault("maxItems", len(items))
    return result


def _convert_content(content: dict[str, Any]) -> None:
    for entry in content.values():
        if "schema" in entry:
            entry["schema"] = schema_30(entry["schema"])
