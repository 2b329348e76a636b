"""The OpenAPI 3.1 document of the hub's API, made from ``api.OPERATIONS`` (so it cannot drift
from the routes); served at ``/docs.json``."""

from __future__ import annotations

import re
from typing import Any

from dosirak.__about__ import __version__
from dosirak.hub.api import OPERATIONS, PREFIX, Operation

_ERROR = {"$ref": "#/components/schemas/Error"}
_STATUS_TEXT = {"400": "bad input", "401": "no valid token", "403": "the token lacks the scope",
                "404": "not found", "429": "too many failed attempts"}
_PATH_TYPES = {"index": "integer"}
_PATH_DOC = {"kinds": "models or bentos", "ref": "a version, latest, or @alias"}


def _operation_id(operation: Operation) -> str:
    first, *rest = operation.handler.__name__.split("_")
    return first + "".join(word.title() for word in rest)


def _parameters(operation: Operation) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = []
    for name in re.findall(r"{(\w+)}", operation.path):
        parameter: dict[str, Any] = {"name": name, "in": "path", "required": True,
                                     "schema": {"type": _PATH_TYPES.get(name, "string")}}
        if name == "kinds":
            parameter["schema"]["enum"] = ["models", "bentos"]
        if name in _PATH_DOC:
            parameter["description"] = _PATH_DOC[name]
        parameters.append(parameter)
    for name, kind, description in operation.query:
        parameters.append({"name": name, "in": "query", "required": False,
                           "description": description, "schema": {"type": kind}})
    if operation.handler.__name__ == "put_chunk":
        parameters.append({"name": "X-Chunk-Sha256", "in": "header", "required": True,
                           "description": "sha256 of the chunk's bytes",
                           "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}})
    if operation.handler.__name__ == "download":
        parameters.append({"name": "Range", "in": "header", "required": False,
                           "schema": {"type": "string"}, "description": "bytes=START-[END]"})
    return parameters


def _body(operation: Operation) -> dict[str, Any] | None:
    if operation.handler.__name__ == "put_chunk":
        return {"required": True, "content": {"application/octet-stream": {
            "schema": {"type": "string", "format": "binary"}}}}
    if operation.body is None:
        return None
    properties = {name: ({"type": "array", "items": {"type": "string",
                                                     "enum": ["read", "write", "admin"]}}
                         if kind == "array" else {"type": kind})
                  for name, kind in operation.body.items()}
    return {"required": True, "content": {"application/json": {
        "schema": {"type": "object", "properties": properties}}}}


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for operation in OPERATIONS:
        responses: dict[str, Any] = {"200": {"description": "OK", "content": {
            "application/x-tar" if operation.handler.__name__ == "download"
            else "application/json": {"schema": {}}}}}
        for status, text in {**_STATUS_TEXT, **operation.responses}.items():
            responses[status] = {"description": text,
                                 **({} if status.startswith("2") else
                                    {"content": {"application/json": {"schema": _ERROR}}})}
        if operation.scope is None:
            responses = {k: v for k, v in responses.items() if k not in ("401", "403")}
        entry: dict[str, Any] = {
            "summary": operation.summary, "operationId": _operation_id(operation),
            "parameters": _parameters(operation), "responses": responses,
            "security": [{"token": []}],
        }
        if operation.scope:
            entry["description"] = f"Needs a token with the `{operation.scope}` scope."
        if (body := _body(operation)) is not None:
            entry["requestBody"] = body
        paths.setdefault(PREFIX + operation.path, {})[operation.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "dosirak hub", "version": __version__,
                 "description": "Models and bentos shared by a team: push, pull, browse."},
        "paths": paths,
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer",
                                          "description": "a hub token, dsk_..."}},
            "schemas": {"Error": {"type": "object", "required": ["error", "message"],
                                  "properties": {"error": {"type": "string"},
                                                 "message": {"type": "string"}}}},
        },
    }
