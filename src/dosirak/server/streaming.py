"""The request path of a streaming API: an (async) generator whose items go out as made.

    >>> @svc.api(input=Text(), output=Text())
    ... async def generate(prompt: str) -> AsyncGenerator[str, None]:
    ...     async for token in runner.generate.async_stream(prompt):
    ...         yield token

An API is streaming when its function is a generator (decided when the API is defined), and only
such APIs get this endpoint: the others keep ``APIEndpoint``'s path unchanged. The answer is
chunked (HTTP/1.1 with no ``Content-Length``), one chunk per item:

- ``str`` items are UTF-8 text (``text/plain``), ``bytes`` go as they are, anything else is one
  JSON document per line (``application/x-ndjson``);
- with ``Accept: text/event-stream`` each item is one server-sent event (``data:`` lines); an
  item that is already an event (starts with ``data:``/``event:``/``id:``/``:`` and ends with a
  blank line) goes as it is.

The first item is awaited before the status is sent, so a generator that fails at once still
gets its proper error status. A client that disconnects stops the generator: an async one is
cancelled where it waits (then closed), a sync one (run item by item in the thread pool) is
closed after the item it is making, so at most one more item is made after the disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable
from typing import Any

from dosirak.io.encoding import dumps
from dosirak.server.context_endpoint import request_context
from dosirak.server.endpoint import APIEndpoint, ClientDisconnected
from dosirak.server.errors import JSON_HEADER, error_response
from dosirak.server.traffic import RESPONSE_STATE, answered

logger = logging.getLogger("dosirak.server")

EVENT_STREAM = "text/event-stream"
_TEXT = "text/plain; charset=utf-8"
_NDJSON = "application/x-ndjson"
_BINARY = "application/octet-stream"
_DONE = object()
_EVENT_STARTS = ("data:", "event:", "id:", "retry:", ":")


def render_chunk(item: Any) -> bytes:
    """One item of a plain (non-event) stream as bytes."""
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    return dumps(item) + b"\n"


def render_event(item: Any) -> bytes:
    """One item as a server-sent event (``data:`` lines and a blank line)."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        item = bytes(item).decode("utf-8", "replace")
    if isinstance(item, str):
        if item.startswith(_EVENT_STARTS) and item.endswith("\n\n"):
            return item.encode("utf-8")  # the user wrote the event already
        text = item
    else:
        text = dumps(item).decode("utf-8")
    return ("".join(f"data: {line}\n" for line in text.split("\n")) + "\n").encode("utf-8")


def stream_media_type(output: Any) -> str:
    """The Content-Type of a plain stream for an API with ``output``."""
    types = getattr(output, "output_media_types", ())
    if types and types[0].startswith("text/"):
        return _TEXT
    if types and types[0] == "application/json":
        return _NDJSON
    return _BINARY


class StreamEndpoint(APIEndpoint):
    """The ASGI app behind one streaming API's route."""

    def __init__(self, *args: Any, state: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plain_type = stream_media_type(self.output).encode("latin-1")
        self.state = state if state is not None else {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        traffic = scope.get(RESPONSE_STATE)
        watcher: asyncio.Task[Any] | None = None
        items: _Items | None = None
        events = False
        try:
            body, parse_as, params, accept = await self._read_request(scope, receive)
            events = accept is not None and EVENT_STREAM in accept
            loop = asyncio.get_running_loop()
            if len(body) > self._on_loop_below:
                value = await loop.run_in_executor(self._executor(), self._parse, body,
                                                   parse_as, params)
            else:
                value = self._parse(body, parse_as, params)
            context = request_context(scope, self.state) \
                if self.api.context_parameter is not None else None
            items = await self._start(value, context)
            # From here on the generator runs: a disconnect stops it.
            disconnected = asyncio.Event()
            watcher = loop.create_task(_watch_disconnect(receive, disconnected,
                                                         asyncio.current_task()
                                                         if items.cancellable else None))
            first = await items.next()
        except ClientDisconnected:
            return
        except asyncio.CancelledError:
            if items is not None:
                await items.close()
            if not _uncancel_if_disconnected(watcher):
                raise
            return
        except Exception as error:
            if watcher is not None:
                watcher.cancel()
            if items is not None:
                await items.close()
            await self._send_error(error, scope, send, traffic)
            return
        render = render_event if events else render_chunk
        headers = [(b"content-type", EVENT_STREAM.encode() if events else self._plain_type),
                   (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
        status = 200
        if context is not None:  # what the generator set before its first item
            status = context.response.status_code
            headers += context.response.raw_headers()
        if traffic is not None:
            answered(traffic, status, headers, 0)
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            item = first
            while item is not _DONE:
                data = render(item)
                if traffic is not None:
                    traffic[1] += len(data)
                await send({"type": "http.response.body", "body": data, "more_body": True})
                if disconnected.is_set():
                    break
                item = await items.next()
            if not disconnected.is_set():
                await send({"type": "http.response.body", "body": b""})
        except asyncio.CancelledError:
            if not _uncancel_if_disconnected(watcher):
                raise
        except Exception:  # the status is sent: all that is left is to cut the stream short
            logger.exception(
                "API %r failed while streaming its answer; the stream was cut short",
                self.api.name)
        finally:
            watcher.cancel()
            await items.close()

    async def _start(self, value: Any, context: Any) -> _Items:
        function = self.function
        parameter = self.api.context_parameter
        extra = {parameter: context} if parameter is not None and context is not None else {}
        result = function(**value, **extra) if self.api.kwargs_input else \
            function(value, **extra)
        if inspect.isawaitable(result):
            result = await result
        if hasattr(result, "__anext__"):
            return _AsyncItems(result)
        if hasattr(result, "__next__") or hasattr(result, "__iter__"):
            return _SyncItems(iter(result), self._executor)
        raise TypeError(f"the streaming API {self.api.name!r} returned {type(result).__name__}, "
                        "not a generator; yield its items")

    async def _send_error(self, error: Exception, scope: Any, send: Any,
                          traffic: list[Any] | None) -> None:
        status, data, headers = error_response(error, route=self.route,
                                               headers=scope["headers"],
                                               shape=self.output.error_body)
        headers.append(JSON_HEADER)
        headers.append((b"content-length", str(len(data)).encode()))
        if traffic is not None:
            answered(traffic, status, headers, len(data))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})


class _Items:
    """The items of a generator, one ``next()`` at a time; ``_DONE`` at the end."""

    cancellable = False

    async def next(self) -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class _AsyncItems(_Items):
    cancellable = True  # cancelling the task stops the generator where it awaits

    def __init__(self, generator: Any) -> None:
        self.generator = generator

    async def next(self) -> Any:
        try:
            return await self.generator.__anext__()
        except StopAsyncIteration:
            return _DONE

    async def close(self) -> None:
        aclose = getattr(self.generator, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


class _SyncItems(_Items):
    def __init__(self, iterator: Any, executor: Callable[[], Any]) -> None:
        self.iterator = iterator
        self.executor = executor
        self.running: asyncio.Future[Any] | None = None

    async def next(self) -> Any:
        loop = asyncio.get_running_loop()
        # A sync generator may call runner.run() or sleep: each item is made in the pool.
        self.running = loop.run_in_executor(self.executor(), next, self.iterator, _DONE)
        return await self.running

    async def close(self) -> None:
        close = getattr(self.iterator, "close", None)
        if close is None:
            return
        if self.running is not None and not self.running.done():
            with contextlib.suppress(BaseException):
                await asyncio.shield(self.running)
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            await loop.run_in_executor(self.executor(), close)


async def _watch_disconnect(receive: Any, disconnected: asyncio.Event,
                            task: asyncio.Task[Any] | None) -> bool:
    """Wait for the client to leave; then say so and cancel ``task`` (the streaming one)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            disconnected.set()
            if task is not None:
                task.cancel()
            return True


def _uncancel_if_disconnected(watcher: asyncio.Task[Any] | None) -> bool:
    """True (and the cancel undone) when the cancel came from the client's disconnect."""
    if watcher is None or not watcher.done() or watcher.cancelled() or not watcher.result():
        return False
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    return True
