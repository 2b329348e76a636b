"""One call of an API with no HTTP server: the same answer, byte for byte, as the HTTP API gives.

    >>> answer = run_once(svc, "classify", b"[[5.9, 3.0, 5.1, 1.8]]", "application/json")
    >>> answer.status, answer.body
    (200, b'[2]')

The API's own endpoint (``dosirak.server.endpoint``) answers the call as an in-process ASGI
application: the request never touches a socket, yet it is parsed, validated, run and rendered
(errors included) by the very code that serves HTTP. Runners run in this process.
"""

from __future__ import annotations

import asyncio
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dosirak.exceptions import InvalidArgument
from dosirak.io.base import JSON_MEDIA_TYPE
from dosirak.services import Service

#: Bodies are in memory already: the size limit of the HTTP server does not apply.
_NO_LIMIT = 1 << 62
_MEDIA_TYPES = {".json": JSON_MEDIA_TYPE, ".csv": "text/csv", ".txt": "text/plain",
                ".npy": "application/x-npy", ".parquet": "application/vnd.apache.parquet"}


@dataclass(frozen=True)
class Answer:
    """What the API answered: the HTTP status it would have, the body and its Content-Type."""

    status: int
    body: bytes
    content_type: str

    @property
    def ok(self) -> bool:
        return self.status == 200


def run_once(svc: Service, api_name: str, body: bytes, content_type: str | None,
             accept: str | None = None) -> Answer:
    """Start ``svc`` in this process, make one call, stop it."""

    async def main() -> Answer:
        await svc.startup(runner_mode="local")
        try:
            return await call(svc, api_name, body, content_type, accept)
        finally:
            await svc.shutdown()

    return asyncio.run(main())


async def call(svc: Service, api_name: str, body: bytes, content_type: str | None,
               accept: str | None = None) -> Answer:
    """One call of a started service's API, through the API's HTTP endpoint, without HTTP."""
    from dosirak.server.endpoint import APIEndpoint

    api = svc.apis.get(api_name)
    if api is None:
        raise InvalidArgument(f"service {svc.name!r} has no API {api_name!r}; its APIs: "
                              f"{sorted(svc.apis)}")
    endpoint = APIEndpoint(api, max_request_size=_NO_LIMIT, executor=lambda: None)
    headers = [(b"content-length", str(len(body)).encode())]
    if content_type:
        headers.append((b"content-type", content_type.encode("latin-1")))
    if accept:
        headers.append((b"accept", accept.encode("latin-1")))
    scope = {"type": "http", "method": "POST", "path": api.route, "headers": headers}
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:  # the endpoint reads once; a second read would mean the client left
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await endpoint(scope, receive, send)
    start = next(message for message in sent if message["type"] == "http.response.start")
    answer_headers = dict(start["headers"])
    data = b"".join(message.get("body", b"") for message in sent
                    if message["type"] == "http.response.body")
    return Answer(start["status"], data,
                  answer_headers.get(b"content-type", b"").decode("latin-1"))


def input_media_type(svc: Service, api_name: str, path: Path | None) -> str:
    """The Content-Type for an input: from the file's extension, or what the API reads first."""
    api = svc.apis.get(api_name)
    if api is None:
        raise InvalidArgument(f"service {svc.name!r} has no API {api_name!r}; its APIs: "
                              f"{sorted(svc.apis)}")
    if path is not None:
        suffix = path.suffix.lower()
        guessed = _MEDIA_TYPES.get(suffix) or mimetypes.guess_type(path.name)[0]
        if guessed is not None:
            return guessed
    accepted = api.input.input_media_types
    return JSON_MEDIA_TYPE if JSON_MEDIA_TYPE in accepted else accepted[0]
