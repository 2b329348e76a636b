"""``SyncHTTPClient``: call a running service's APIs as blocking Python methods."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import httpx

from dosirak.client.base import DEFAULT_TIMEOUT, ClientBase, ReadinessWait
from dosirak.client.schema import RemoteAPI
from dosirak.client.stream import StreamDecoder


class SyncHTTPClient(ClientBase):
    """A client of a running service, with one method per API, built from its ``/docs.json``.

        >>> import numpy as np, dosirak
        >>> with dosirak.SyncHTTPClient("http://127.0.0.1:3000", wait_ready=True) as client:
        ...     client.classify(np.array([[5.1, 3.5, 1.4, 0.2]]))     # -> array([0])
        ...     client.call("classify", np.array([[6.7, 3.0, 5.2, 2.3]]))
        ...     client.scaled(rows=np.ones((2, 2)), flower=Flower(sepal_length=2, sepal_width=1))

    Each API is a method named after it; ``call(name, ...)`` reaches any API (also one whose
    name is taken by a method of the client, such as ``close``). An API with one input takes
    one value; a multipart API takes its fields as keyword arguments. How a value is sent and
    how answers are read: ``dosirak.client`` (arrays travel as ``.npy`` when the API offers it).

    ``wait_ready=True`` polls ``/readyz`` until the service is ready, for at most ``timeout``
    seconds, which is also the time each call may take. ``headers`` go with every request;
    ``token`` is sent as ``Authorization: Bearer TOKEN`` (a service with ``api_server.auth``).
    ``schema`` builds the methods from a given OpenAPI document instead of ``/docs.json``.
    Connections are kept alive and pooled: share one client between threads. Errors raise the
    ``dosirak.exceptions`` class of the answer's status (see ``dosirak.client.errors``).
    """

    def __init__(self, url: str, *, wait_ready: bool = False, timeout: float = DEFAULT_TIMEOUT,
                 headers: dict[str, str] | None = None,
                 schema: dict[str, Any] | None = None, token: str | None = None) -> None:
        super().__init__(url, timeout=timeout, headers=headers, token=token)
        self._http = httpx.Client(base_url=self.url, timeout=self.timeout,
                                  headers=self.headers)
        try:
            if wait_ready:
                self.wait_ready()
            self._build(schema if schema is not None else self._get_json("/docs.json"))
        except BaseException:
            self._http.close()
            raise

    def call(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call the API ``name`` with one value, or with keyword arguments for multipart APIs.

        A streaming API's call returns an iterator over its items as they arrive."""
        api = self._api(name)
        body, headers = self._prepare(api, args, kwargs)
        where = f"POST {self.url}{api.route}"
        if api.streaming:
            return self._stream(api, body.data, headers, where)
        try:
            response = self._http.post(api.route, content=body.data, headers=headers)
        except httpx.TransportError as error:
            raise self._unreachable(error, where) from None
        return self._result(response, where)

    def _stream(self, api: RemoteAPI, data: bytes, headers: dict[str, str],
                where: str) -> Iterator[Any]:
        try:
            with self._http.stream("POST", api.route, content=data, headers=headers) as response:
                if response.status_code >= 400:
                    response.read()
                    self._result(response, where)
                decoder = StreamDecoder(response.headers.get("content-type"))
                for chunk in response.iter_raw():
                    yield from decoder.feed(chunk)
                yield from decoder.end()
        except httpx.TransportError as error:
            raise self._unreachable(error, where) from None

    def is_ready(self) -> bool:
        """True when ``/readyz`` answers 200 (every runner of the service is ready)."""
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until ``/readyz`` answers 200; ``ServiceUnreachable`` after ``timeout`` s."""
        wait = ReadinessWait(self.url, self.timeout if timeout is None else timeout)
        while True:
            try:
                if wait.answered(self._http.get("/readyz", timeout=wait.poll_timeout())):
                    return
            except httpx.TransportError as error:
                wait.failed(error)
            delay = wait.next_delay()
            if delay is None:
                raise wait.error()
            time.sleep(delay)

    def close(self) -> None:
        """Close the pooled connections; the client cannot be used afterwards."""
        self._http.close()

    def __enter__(self) -> SyncHTTPClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _get_json(self, path: str) -> Any:
        where = f"GET {self.url}{path}"
        try:
            response = self._http.get(path)
        except httpx.TransportError as error:
            raise self._unreachable(error, where) from None
        return self._result(response, where)

    def _method(self, api: RemoteAPI) -> Callable[..., Any]:
        call = self.call
        name = api.name

        def invoke(*args: Any, **kwargs: Any) -> Any:
            return call(name, *args, **kwargs)

        invoke.__name__ = invoke.__qualname__ = api.name
        invoke.__doc__ = f"{api.description}\n\n{api.summary()}".strip()
        return invoke
