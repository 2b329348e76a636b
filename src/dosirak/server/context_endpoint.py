"""The request path of an API that takes a ``dosirak.Context``.

Only APIs that declare a context parameter get this endpoint (decided when the app is built):
it makes the ``Context`` (a Starlette ``Request`` over the scope, a fresh ``response``, the
worker's shared ``state``), passes it to the function as a keyword argument, and answers with
the status, headers and cookies the function set. Everything else is ``APIEndpoint``'s: the
body read under the size limit, the parse, the error answers. Parsing and the call run on the
loop for async functions; a sync function runs with its parse in the thread pool.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from dosirak.context import Context
from dosirak.server.endpoint import APIEndpoint, ClientDisconnected, send_answer
from dosirak.server.errors import JSON_HEADER, error_response


def request_context(scope: Any, state: dict[str, Any]) -> Context:
    """A ``Context`` for the request of ``scope`` (its body already read)."""
    from starlette.requests import Request

    return Context(Request(scope), state)


class ContextEndpoint(APIEndpoint):
    """The ASGI app behind the route of an API that takes a ``dosirak.Context``."""

    def __init__(self, *args: Any, state: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state = state
        self._context_parameter = self.api.context_parameter

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            body, parse_as, params, accept = await self._read_request(scope, receive)
            context = request_context(scope, self.state)
            if self.is_async:
                value = self._parse(body, parse_as, params)
                result = await self._call(value, context)
            else:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(
                    self._executor(), functools.partial(self._parse_and_call, body, parse_as,
                                                        params, context))
            data, response_type = self.output.render(result, self.output.negotiate(accept))
            status = context.response.status_code
            headers = [(b"content-type", response_type.encode("latin-1")),
                       *context.response.raw_headers()]
        except ClientDisconnected:
            return
        except Exception as error:
            status, data, headers = error_response(error, route=self.route,
                                                   headers=scope["headers"],
                                                   shape=self.output.error_body)
            headers.append(JSON_HEADER)
        await send_answer(scope, send, status, headers, data)

    def _arguments(self, value: Any, context: Context) -> tuple[tuple[Any, ...], dict[str, Any]]:
        assert self._context_parameter is not None
        if self.api.kwargs_input:
            return (), {**value, self._context_parameter: context}
        return (value,), {self._context_parameter: context}

    async def _call(self, value: Any, context: Context) -> Any:
        function = self.function
        args, kwargs = self._arguments(value, context)
        try:
            return await function(*args, **kwargs)
        finally:
            if self.input.needs_cleanup:
                self.input.cleanup(value)

    def _parse_and_call(self, body: bytes | bytearray, media_type: str,
                        params: dict[str, str], context: Context) -> Any:
        value = self._parse(body, media_type, params)
        function = self.function
        args, kwargs = self._arguments(value, context)
        try:
            return function(*args, **kwargs)
        finally:
            if self.input.needs_cleanup:
                self.input.cleanup(value)
