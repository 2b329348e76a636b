"""``AsyncHTTPClient``: call a running service's APIs as coroutines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import httpx

from dosirak.client.base import DEFAULT_TIMEOUT, ClientBase, ReadinessWait
from dosirak.client.schema import RemoteAPI
from dosirak.client.stream import StreamDecoder
from dosirak.client.sync import SyncHTTPClient

# Builds an instance without the blocking schema fetch; ``from_url`` fills the table after.
_NO_APIS: dict[str, Any] = {"paths": {}}


class AsyncHTTPClient(ClientBase):
    """The asynchronous twin of ``SyncHTTPClient``: the same methods, awaited.

        >>> async with dosirak.AsyncHTTPClient("http://127.0.0.1:3000") as client:
        ...     labels = await client.classify(np.array([[5.1, 3.5, 1.4, 0.2]]))
        ...     many = await asyncio.gather(*(client.classify(x) for x in batches))

    The constructor reads ``/docs.json`` (and with ``wait_ready=True`` polls ``/readyz``) with
    blocking requests, like any constructor; inside a running event loop prefer
    ``client = await AsyncHTTPClient.from_url(url, wait_ready=True)``, which does both without
    blocking the loop. One client serves many concurrent calls over pooled keep-alive
    connections; use it from one event loop.
    """

    def __init__(self, url: str, *, wait_ready: bool = False, timeout: float = DEFAULT_TIMEOUT,
                 headers: dict[str, str] | None = None,
                 schema: dict[str, Any] | None = None, token: str | None = None) -> None:
        super().__init__(url, timeout=timeout, headers=headers, token=token)
        if schema is None:
            with SyncHTTPClient(url, wait_ready=wait_ready, timeout=timeout,
                                headers=headers, token=token) as reader:
                schema = reader._get_json("/docs.json")
        self._build(schema)
        self._http = httpx.AsyncClient(base_url=self.url, timeout=self.timeout,
                                       headers=self.headers)

    @classmethod
    async def from_url(cls, url: str, *, wait_ready: bool = False,
                       timeout: float = DEFAULT_TIMEOUT,
                       headers: dict[str, str] | None = None,
                       token: str | None = None) -> AsyncHTTPClient:
        """A client built without blocking the event loop (awaiting readiness if asked)."""
        client = cls(url, timeout=timeout, headers=headers, schema=_NO_APIS, token=token)
        try:
            if wait_ready:
                await client.wait_ready()
            client._build(await client._get_json("/docs.json"))
        except BaseException:
            await client.close()
            raise
        return client

    async def call(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call the API ``name`` with one value, or with keyword arguments for multipart APIs."""
        api = self._api(name)
        body, headers = self._prepare(api, args, kwargs)
        where = f"POST {self.url}{api.route}"
        try:
            response = await self._http.post(api.route, content=body.data, headers=headers)
        except httpx.TransportError as error:
            raise self._unreachable(error, where) from None
        return self._result(response, where)

    async def stream(self, name: str, /, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """Call the streaming API ``name``; iterate over its items as they arrive."""
        api = self._api(name)
        body, headers = self._prepare(api, args, kwargs)
        where = f"POST {self.url}{api.route}"
        try:
            async with self._http.stream("POST", api.route, content=body.data,
                                         headers=headers) as response:
                if response.status_code >= 400:
                    await response.aread()
                    self._result(response, where)
                decoder = StreamDecoder(response.headers.get("content-type"))
                async for chunk in response.aiter_raw():
                    for item in decoder.feed(chunk):
                        yield item
                for item in decoder.end():
                    yield item
        except httpx.TransportError as error:
            raise self._unreachable(error, where) from None

    async def is_ready(self) -> bool:
        """True when ``/readyz`` answers 200 (every runner of the service is ready)."""
        try:
            return (await self._http.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until ``/readyz`` answers 200; ``ServiceUnreachable`` after ``timeout`` s."""
        wait = ReadinessWait(self.url, self.timeout if timeout is None else timeout)
        while True:
            try:
                response = await self._http.get("/readyz", timeout=wait.poll_timeout())
                if wait.answered(response):
                    return
            except httpx.TransportError as error:
                wait.failed(error)
            delay = wait.next_delay()
            if delay is None:
                raise wait.error()
            await asyncio.sleep(delay)

    async def close(self) -> None:
        """Close the pooled connections; the client cannot be used afterwards."""
        await self._http.aclose()

    aclose = close

    async def __aenter__(self) -> AsyncHTTPClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    async def _get_json(self, path: str) -> Any:
        where = f"GET {self.url}{path}"
        try:
            response = await self._http.get(path)
        except httpx.TransportError as error:
            raise self._unreachable(error, where) from None
        return self._result(response, where)

    def _method(self, api: RemoteAPI) -> Callable[..., Any]:
        call = self.call
        name = api.name
        if api.streaming:  # `async for item in client.generate(...)`, as in BentoML
            stream = self.stream

            def iterate(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                return stream(name, *args, **kwargs)

            iterate.__name__ = iterate.__qualname__ = api.name
            iterate.__doc__ = f"{api.description}\n\n{api.summary()}".strip()
            return iterate

        async def invoke(*args: Any, **kwargs: Any) -> Any:
            return await call(name, *args, **kwargs)

        invoke.__name__ = invoke.__qualname__ = api.name
        invoke.__doc__ = f"{api.description}\n\n{api.summary()}".strip()
        return invoke
