"""The APIs of a running service, read from its OpenAPI document (``/docs.json``).

Each inference API is one ``POST`` operation whose ``operationId`` is the API's name. What a
client needs to call it is there: the route, the media types the request body may have (with
their schemas, which say how a table is laid out in JSON), the media types of the answer, and for
multipart inputs the field names with each field's media type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dosirak.exceptions import InvalidArgument

FORM_MEDIA_TYPE = "multipart/form-data"


@dataclass(frozen=True)
class RemoteAPI:
    """One API of a service as its OpenAPI document describes it."""

    name: str
    route: str
    #: Request media types, in the server's order of preference, each with its schema.
    request: dict[str, dict[str, Any]]
    #: Response media types of a successful call, the server's default first.
    response: tuple[str, ...]
    description: str = ""
    #: For multipart inputs: each field's name and the media type its part should have.
    fields: dict[str, str] | None = None
    #: For multipart inputs: each field's schema (how a table field is laid out in JSON).
    field_schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: For one-parameter APIs that document it: the parameter's name (keyword calls use it)
    #: and whether it must be given (else a call without it sends ``{}``: the default).
    parameter: str | None = None
    parameter_required: bool = True
    #: True when the API reads the 1.2 body ``{"name": value}`` (see ``dosirak.io.keyed``).
    keyed: bool = False
    #: True when the answer is a stream of items (the client's method then iterates).
    streaming: bool = False

    @property
    def takes_fields(self) -> bool:
        """True when the API's input is several named fields (keyword arguments)."""
        return self.fields is not None

    def __repr__(self) -> str:
        return (f"RemoteAPI(name={self.name!r}, route={self.route!r}, "
                f"request={list(self.request)}, response={list(self.response)}"
                + (f", fields={list(self.fields)})" if self.fields is not None else ")"))

    def summary(self) -> str:
        """A one-line description of how to call the API, for docstrings and errors."""
        if self.fields is not None:
            taking = f"keyword arguments {', '.join(self.fields)}"
        else:
            taking = f"one value (sent as {' or '.join(self.request)})"
        return f"{self.name}: POST {self.route} taking {taking}; answers {', '.join(self.response)}"


def apis_from_openapi(document: Any) -> dict[str, RemoteAPI]:
    """The inference APIs of a service's OpenAPI document, by name."""
    if not isinstance(document, dict) or not isinstance(document.get("paths"), dict):
        raise InvalidArgument("the service's /docs.json is not an OpenAPI document (no 'paths'); "
                              "is the URL that of a dosirak service?")
    schemas = document.get("components", {}).get("schemas", {})
    apis: dict[str, RemoteAPI] = {}
    for route, operations in document["paths"].items():
        operation = operations.get("post") if isinstance(operations, dict) else None
        if not isinstance(operation, dict) or not operation.get("operationId"):
            continue  # health checks and docs are GET routes without an operationId
        name = operation["operationId"]
        content = operation.get("requestBody", {}).get("content", {})
        request = {media_type.lower(): _resolve(entry.get("schema", {}), schemas)
                   for media_type, entry in content.items()}
        success = operation.get("responses", {}).get("200", {})
        answer = success.get("content", {})
        fields, field_schemas = _fields(content, schemas)
        parameter = operation.get("requestBody", {}).get("x-dosirak-parameter")
        if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
            parameter = {}
        apis[name] = RemoteAPI(
            name=name, route=route, request=request,
            response=tuple(media_type.lower() for media_type in answer),
            description=operation.get("description") or operation.get("summary") or "",
            fields=fields, field_schemas=field_schemas,
            parameter=parameter.get("name"),
            parameter_required=bool(parameter.get("required", True)),
            keyed=bool(parameter.get("keyed", False)),
            streaming=success.get("x-dosirak-stream") is True)
    return apis


def _fields(content: dict[str, Any],
            schemas: dict[str, Any]) -> tuple[dict[str, str] | None, dict[str, dict[str, Any]]]:
    # A Multipart input reads only forms and their JSON twin. A form beside other media types
    # (image/*, */*) is the upload form of a single File or Image input, which takes one value,
    # not keyword arguments, even when its "encoding" names the part's types.
    form = content.get(FORM_MEDIA_TYPE)
    if not form or any(media_type.lower() not in (FORM_MEDIA_TYPE, "application/json")
                       for media_type in content):
        return None, {}
    properties = _resolve(form.get("schema", {}), schemas).get("properties", {})
    encoding = form["encoding"]
    fields = {name: encoding.get(name, {}).get("contentType", "application/json").lower()
              for name in properties}
    return fields, {name: _resolve(schema, schemas) for name, schema in properties.items()}


def _resolve(schema: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with a top-level ``$ref`` to ``components.schemas`` followed."""
    for _ in range(8):  # a chain of references is short; a loop of them is a broken document
        if not isinstance(schema, dict):
            return {}
        reference = schema.get("$ref")
        if not isinstance(reference, str) or not reference.startswith("#/components/schemas/"):
            return schema
        schema = schemas.get(reference.rsplit("/", 1)[1], {})
    return {}


def form_field_name(api: RemoteAPI) -> str:
    """The field name of a single-upload form (``file`` for File, ``image`` for Image)."""
    form = api.request.get(FORM_MEDIA_TYPE, {})
    names = list(form.get("properties", {}))
    return names[0] if len(names) == 1 else "file"
