"""The request path of one inference API, as a raw ASGI application.

This is the hot path, so it does only what each request needs: one pass over the headers, a
body read that stops at the size limit, the input descriptor's parse, the call, the output
descriptor's render, two ``send`` calls. Everything else (routes, schemas, header bytes) was
prepared when the app was built. A sync API function runs in the thread pool together with its
parse and render, so the event loop never decodes or encodes a body for it; an async function
runs on the loop, with large bodies parsed in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dosirak.exceptions import PayloadTooLarge, UnsupportedMediaType
from dosirak.io.base import parse_content_type
from dosirak.server.errors import JSON_HEADER, error_response
from dosirak.server.traffic import RESPONSE_STATE, answered
from dosirak.services import InferenceAPI

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]

#: Bodies and results larger than this are parsed and rendered off the event loop.
OFF_LOOP_BYTES = 1 << 20


class ClientDisconnected(Exception):
    """The client went away before sending its whole body; nobody is left to answer."""


class APIEndpoint:
    """The ASGI app behind one API's route (POST only; the router answers other methods)."""

    def __init__(self, api: InferenceAPI, *, max_request_size: int,
                 executor: Callable[[], ThreadPoolExecutor | None]) -> None:
        self.api = api
        self.route = api.route
        self.input = api.input
        self.output = api.output
        self.max_request_size = max_request_size
        self._executor = executor
        self._accepted = list(api.input.input_media_types)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = accept = None
        length = -1
        for key, value in scope["headers"]:
            if key == b"content-type":
                content_type = value.decode("latin-1")
            elif key == b"accept":
                accept = value.decode("latin-1")
            elif key == b"content-length":
                length = int(value) if value.isdigit() else -1
        try:
            media_type, params = parse_content_type(content_type)
            parse_as = self.input.media_type_for(media_type)
            if parse_as is None:
                error = UnsupportedMediaType(
                    f"this API does not read {media_type}; send one of {self._accepted}")
                error.accepted = self._accepted  # type: ignore[attr-defined]
                raise error
            if length > self.max_request_size:
                raise PayloadTooLarge(self._too_large(length))
            body = await self._read_body(receive)
            api = self.api
            if api.is_async:
                data, response_type = await self._run_async(body, parse_as, params, accept)
            else:
                loop = asyncio.get_running_loop()
                data, response_type = await loop.run_in_executor(
                    self._executor(), self._run_sync, body, parse_as, params, accept)
            status = 200
            headers = [(b"content-type", response_type.encode("latin-1"))]
        except ClientDisconnected:
            return
        except Exception as error:
            status, data, headers = error_response(error, route=self.route,
                                                   headers=scope["headers"],
                                                   shape=self.output.error_body)
            headers.append(JSON_HEADER)
        headers.append((b"content-length", str(len(data)).encode()))
        traffic = scope.get(RESPONSE_STATE)
        if traffic is not None:  # called by Traffic directly: the id header and the log are ours
            answered(traffic, status, headers, len(data))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    async def _read_body(self, receive: Receive) -> bytes | bytearray:
        limit = self.max_request_size
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if len(chunk) > limit:
            raise PayloadTooLarge(self._too_large(None))
        if not message.get("more_body", False):
            return chunk
        body = bytearray(chunk)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            body += message.get("body", b"")
            # Checked per chunk: an oversized upload is refused before it is all in memory.
            if len(body) > limit:
                raise PayloadTooLarge(self._too_large(None))
            if not message.get("more_body", False):
                return body

    def _too_large(self, length: int | None) -> str:
        size = f"{length} bytes" if length is not None else "more than the limit"
        return (f"the request body is {size}; this server accepts at most "
                f"{self.max_request_size} bytes (raise max_request_size to allow more)")

    def _run_sync(self, body: bytes | bytearray, media_type: str, params: dict[str, str],
                  accept: str | None) -> tuple[bytes, str]:
        value = self.input.parse(body, media_type, params)
        try:
            result = self._call_sync(value)
        finally:
            if self.input.needs_cleanup:
                self.input.cleanup(value)
        return self.output.render(result, self.output.negotiate(accept))

    def _call_sync(self, value: Any) -> Any:
        function = self.api.callable
        assert function is not None
        return function(**value) if self.api.kwargs_input else function(value)

    async def _run_async(self, body: bytes | bytearray, media_type: str,
                         params: dict[str, str], accept: str | None) -> tuple[bytes, str]:
        loop = asyncio.get_running_loop()
        if len(body) > OFF_LOOP_BYTES:
            value = await loop.run_in_executor(self._executor(), self.input.parse, body,
                                               media_type, params)
        else:
            value = self.input.parse(body, media_type, params)
        function = self.api.callable
        assert function is not None
        try:
            result = await (function(**value) if self.api.kwargs_input else function(value))
        finally:
            if self.input.needs_cleanup:
                self.input.cleanup(value)
        output_type = self.output.negotiate(accept)
        if getattr(result, "nbytes", 0) > OFF_LOOP_BYTES:
            return await loop.run_in_executor(self._executor(), self.output.render, result,
                                              output_type)
        return self.output.render(result, output_type)
