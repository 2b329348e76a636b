"""The request path of one inference API, as a raw ASGI application.

This is the hot path, so it does only what each request needs: one pass over the headers, a
body read that stops at the size limit, the input descriptor's parse, the call, the output
descriptor's render, two ``send`` calls. Everything else (routes, schemas, header bytes) was
prepared when the app was built. A sync API function runs in the thread pool together with its
parse and render, so the event loop never decodes or encodes a body for it; an async function
(and a sync one run on the loop) has its body parsed on the loop only while that is quick:

- a body larger than the descriptor's ``parse_on_loop_below`` bytes (1 MiB unless the
  descriptor knows its parse costs more per byte) is parsed in the thread pool;
- every parse on the loop of a body over ``MIN_ON_LOOP_BYTES`` is timed; when one takes more
  than ``BLOCKING_PARSE`` seconds, or ``SLOW_PARSES`` in a row more than ``SLOW_PARSE`` each,
  bodies of that media type and of more than the size that parse could afford (``SLOW_PARSE``
  worth of bytes at its speed) go to the thread pool from then on. Other requests then never
  wait behind a costly parse for long.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dosirak.exceptions import PayloadTooLarge, UnsupportedMediaType
from dosirak.io.base import JSON_MEDIA_TYPE, parse_content_type
from dosirak.io.keyed import keyed_parser, media_types_for
from dosirak.server.errors import JSON_HEADER, error_response
from dosirak.server.traffic import RESPONSE_STATE, answered
from dosirak.services import InferenceAPI

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]

logger = logging.getLogger("dosirak.server")

#: Bodies and results larger than this are parsed and rendered off the event loop.
OFF_LOOP_BYTES = 1 << 20
#: One parse on the loop taking this long (seconds) moves larger bodies of its media type off it.
BLOCKING_PARSE = 0.05
#: So do ``SLOW_PARSES`` parses in a row of more than ``SLOW_PARSE`` seconds each.
SLOW_PARSE = 0.002
SLOW_PARSES = 3
#: Bodies at least this small stay on the loop, untimed, whatever was learned: their parse is
#: bounded by the descriptors' limits, and moving them would cost more than it saves.
MIN_ON_LOOP_BYTES = 1024
# RFC 9110: type "/" subtype, each a token.
_MEDIA_TYPE = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+/[!#$%&'*+.^_`|~0-9a-z-]+$")


# Stands for a Content-Type header that is present but not a media type.
_UNPARSABLE = "(unparsable)"


@functools.lru_cache(maxsize=512)
def _content_type(header: str | None) -> tuple[str | None, dict[str, str]]:
    """The media type and parameters of a Content-Type header; ``_UNPARSABLE`` as the type when
    the header is there but is not one (a missing header means the API's default type)."""
    media_type, params = parse_content_type(header)
    if header is not None and (media_type is None or not _MEDIA_TYPE.match(media_type)):
        return _UNPARSABLE, {}
    return media_type, params


class ClientDisconnected(Exception):
    """The client went away before sending its whole body; nobody is left to answer."""


def answer_start(scope: Scope, status: int, headers: list[tuple[bytes, bytes]],
                 data: bytes) -> dict[str, Any]:
    """The ``http.response.start`` message of a whole answer whose body is ``data``; when
    Traffic called the endpoint directly, the id header and the log are the endpoint's to do,
    and are done here."""
    headers.append((b"content-length", str(len(data)).encode()))
    traffic = scope.get(RESPONSE_STATE)
    if traffic is not None:
        answered(traffic, status, headers, len(data))
    return {"type": "http.response.start", "status": status, "headers": headers}


async def send_answer(scope: Scope, send: Send, status: int, headers: list[tuple[bytes, bytes]],
                      data: bytes) -> None:
    """Send a whole answer (head and body in two messages) of an endpoint."""
    await send(answer_start(scope, status, headers, data))
    await send({"type": "http.response.body", "body": data})


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
        #: What a request calls, and whether it is awaited: the API's callable, until the
        #: server has it run otherwise (``use``): on the loop, with its predictions logged.
        self.function: Callable[..., Any] = api.callable
        self.is_async = api.is_async
        # Decided here, once: only APIs derived from one named parameter read the 1.2 body.
        keyed = keyed_parser(api.input, api.parameter, api.parameter_default) \
            if api.keyed and api.parameter is not None else None
        self._parse = keyed or api.input.parse
        self._media_type_for = media_types_for(api.input, keyed is not None)
        self._accepted = list(api.input.input_media_types)
        if keyed is not None and JSON_MEDIA_TYPE not in self._accepted:
            self._accepted.append(JSON_MEDIA_TYPE)
        self._on_loop_below = api.input.parse_on_loop_below
        # Per media type: the body size from which parses were seen to stall the loop.
        self._learned_below: dict[str, int] = {}
        self._slow_parses = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            parse_as, params, accept = self._request_head(scope)
            body = await self._read_body(receive)
            if self.is_async:
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
        # send_answer's two sends here: one coroutine fewer on every request
        await send(answer_start(scope, status, headers, data))
        await send({"type": "http.response.body", "body": data})

    async def _read_request(self, scope: Scope, receive: Receive
                            ) -> tuple[bytes | bytearray, str, dict[str, str], str | None]:
        """The body, the media type to parse it as, its parameters and the Accept header, with
        the checks ``__call__`` makes; for the endpoints of APIs that stream or take a context."""
        parse_as, params, accept = self._request_head(scope)
        return await self._read_body(receive), parse_as, params, accept

    def _request_head(self, scope: Scope) -> tuple[str, dict[str, str], str | None]:
        """What the request's head says: the media type to parse the body as, its parameters
        and the Accept header; 415 for a type the API does not read, 413 for a declared
        length past the limit (before any of the body is read)."""
        content_type = accept = None
        length = -1
        for key, value in scope["headers"]:
            if key == b"content-type":
                content_type = value.decode("latin-1")
            elif key == b"accept":
                accept = value.decode("latin-1")
            elif key == b"content-length":
                length = int(value) if value.isdigit() else -1
        media_type, params = _content_type(content_type)
        parse_as = self._media_type_for(media_type)
        if parse_as is None or media_type is _UNPARSABLE:
            raise UnsupportedMediaType(
                f"this API does not read {media_type}; send one of {self._accepted}"
                if media_type is not _UNPARSABLE else
                f"the Content-Type header {content_type!r} is not a media type (type/"
                f"subtype); send one of {self._accepted}", self._accepted)
        if length > self.max_request_size:
            raise PayloadTooLarge(self._too_large(length))
        return parse_as, params, accept

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

    def _parse_was_slow(self, media_type: str, size: int, took: float) -> None:
        self._slow_parses += 1
        if took <= BLOCKING_PARSE and self._slow_parses < SLOW_PARSES:
            return
        affordable = max(MIN_ON_LOOP_BYTES, int(size * SLOW_PARSE / took))
        if affordable < self._learned_below.get(media_type, size + 1):
            self._learned_below[media_type] = affordable
            logger.warning("API %r: parsing a %d-byte %s body held the event loop for %.1f ms; "
                           "%s bodies over %d bytes are parsed in the thread pool from now on",
                           self.api.name, size, media_type, took * 1000, media_type,
                           affordable)

    def _too_large(self, length: int | None) -> str:
        size = f"{length} bytes" if length is not None else "more than the limit"
        return (f"the request body is {size}; this server accepts at most "
                f"{self.max_request_size} bytes (raise max_request_size to allow more)")

    def _run_sync(self, body: bytes | bytearray, media_type: str, params: dict[str, str],
                  accept: str | None) -> tuple[bytes, str]:
        value = self._parse(body, media_type, params)
        try:
            result = self._call_sync(value)
        finally:
            if self.input.needs_cleanup:
                self.input.cleanup(value)
        return self.output.render(result, self.output.negotiate(accept))

    def use(self, function: Callable[..., Any], is_async: bool) -> None:
        """Call ``function`` for every request from now on (awaited when ``is_async``).

        The server composes it at startup from the API's callable and hands it to every
        endpoint of the API; the API itself is never rewritten.
        """
        self.function = function
        self.is_async = is_async

    def _call_sync(self, value: Any) -> Any:
        function = self.function
        return function(**value) if self.api.kwargs_input else function(value)

    async def _call_async(self, value: Any) -> Any:
        """Await the API on ``value``, then release what its parse allocated."""
        function = self.function
        try:
            return await (function(**value) if self.api.kwargs_input else function(value))
        finally:
            if self.input.needs_cleanup:
                self.input.cleanup(value)

    async def _run_async(self, body: bytes | bytearray, media_type: str,
                         params: dict[str, str], accept: str | None) -> tuple[bytes, str]:
        loop = asyncio.get_running_loop()
        size = len(body)
        if size <= MIN_ON_LOOP_BYTES and size <= self._on_loop_below:  # whatever was learned
            value = self._parse(body, media_type, params)
        elif size > self._on_loop_below or size > self._learned_below.get(media_type, size):
            value = await loop.run_in_executor(self._executor(), self._parse, body,
                                               media_type, params)
        else:
            start = time.perf_counter()
            try:
                value = self._parse(body, media_type, params)
            finally:
                took = time.perf_counter() - start
                if took > SLOW_PARSE:
                    self._parse_was_slow(media_type, size, took)
                else:
                    self._slow_parses = 0
        # _call_async's steps, inline: one coroutine fewer on every request
        function = self.function
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
