"""What every request goes through before its route: an id, limits, metrics and the access log.

    >>> app = Traffic(service_app.route, metrics=metrics, access_log=AccessLog(),
    ...               api_routes={"/classify"}, timeout=60.0, max_concurrency=100)

One ASGI wrapper does it all, because each layer of middleware costs a call, a closure and a
``send`` wrapper per request, and this path is taken by every request:

- **Request id**: the client's ``x-request-id`` when it is a sane token, else a new one; it goes
  back in the response header, into the access log, and into the request's headers so a 500 body
  quotes the same id.
- **Admission**: API calls beyond ``max_concurrency`` at once are answered 503 at once, with
  ``Retry-After``: the server is at capacity, and a client or load balancer should try again
  shortly or elsewhere, as for the batcher's own 503. Health, docs and metrics routes are never
  refused: probes must see the truth.
- **Timeout**: an API call still running after ``timeout`` seconds is cancelled and answered 504.
  One timer sweeps every call in flight a few times per timeout instead of one timer per
  request; a call may run up to a tenth of the timeout longer.
- **Metrics and access log**: one ``request_started``/``request_finished`` pair and one access
  line per request, with the status, latency and body sizes seen here.

Most requests are seen through a wrapper of ``send`` that adds the id header and notes the
status and the body size. An API call with no middleware between (``direct``: the endpoints by
route) skips the wrapper and the router: the endpoint finds ``scope[RESPONSE_STATE]`` and does
both itself with :func:`answered`, which saves about 2 us of the request.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Collection
from typing import Any

from dosirak.io.encoding import dumps
from dosirak.observability.request_id import current_request_id, new_request_id, request_id

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]

_JSON = (b"content-type", b"application/json")
#: The status recorded for a request whose client left before any answer (as nginx logs it).
CLIENT_CLOSED = 499
#: Scope key where the HTTP protocol notes the status of a request it ended itself (a body that
#: stopped arriving: 408), so the log does not call it the client's disconnect.
CLOSED_WITH = "dosirak.closed_with"
#: Scope key of a direct API call's ``[status, response body bytes, id header]``.
RESPONSE_STATE = "dosirak.response"


def answered(state: list[Any], status: int, headers: list[tuple[bytes, bytes]],
             size: int) -> None:
    """For an endpoint called directly: note the answer in ``state`` and add the id header
    (a 5xx answer may carry the id already)."""
    state[0] = status
    state[1] = size
    if status < 500 or not any(key == b"x-request-id" for key, _ in headers):
        headers.append(state[2])


class Traffic:
    """ASGI wrapper applying request ids, limits, metrics and the access log; see the module."""

    def __init__(self, app: Any, *, metrics: Any, access_log: Any,
                 api_routes: Collection[str], timeout: float | None = None,
                 max_concurrency: int | None = None, track_request_id: bool = False,
                 direct: dict[str, Any] | None = None) -> None:
        self.app = app
        self.direct = direct or {}
        self.metrics = metrics
        self.access_log = access_log
        self.api_routes = frozenset(api_routes)
        self.timeout = timeout if timeout and math.isfinite(timeout) else None
        self.max_concurrency = max_concurrency
        self.track_request_id = track_request_id
        self.active = 0  # API calls in progress
        # Timeouts: the task of each API call in flight and when it must be done by.
        self._deadlines: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_every = min(max((self.timeout or 1) / 10, 0.005), 0.5)
        self._too_busy = dumps({"error": f"this server handles at most {max_concurrency} API "
                                         "calls at once and is at that limit; retry shortly, or "
                                         "raise api_server.max_concurrency or the number of API "
                                         "workers"})
        self._too_slow = dumps({"error": f"the call took longer than this server's timeout of "
                                         f"{timeout:g} s and was stopped (api_server.timeout)"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"]
        method = scope["method"]
        headers = scope["headers"]
        rid = None
        request_size = None
        for index, (key, value) in enumerate(headers):
            if key == b"x-request-id":
                rid = request_id(value)
                if rid.encode() != value:  # refused (not a sane token): the request gets ours
                    headers[index] = (key, rid.encode())
            elif key == b"content-length" and value.isdigit():
                request_size = int(value)
        if rid is None:
            rid = new_request_id()
            rid_header = (b"x-request-id", rid.encode())
            headers.append(rid_header)
        else:
            rid_header = (b"x-request-id", rid.encode())
        if self.track_request_id:
            current_request_id.set(rid)
        series = self.metrics.request_started(path, method)
        # status (0: no answer started yet), response body bytes, the id header
        state: list[Any] = [0, 0, rid_header]
        is_api = method == "POST" and path in self.api_routes
        app = self.direct.get(path) if is_api and not scope.get("root_path") else None
        if app is not None:  # the endpoint adds the id header and notes the answer itself
            scope[RESPONSE_STATE] = state
            respond = send
        else:
            app = self.app

            async def respond(message: Message) -> None:
                if message["type"] == "http.response.start":
                    state[0] = status = message["status"]
                    found = message.get("headers") or ()
                    if status < 500 or not any(key == b"x-request-id" for key, _ in found):
                        message["headers"] = [*found, rid_header]
                else:
                    state[1] += len(message.get("body", b""))
                await send(message)

        status = 500  # what an exception escaping the app means
        try:
            if is_api:
                await self._call_api(app, scope, receive, respond, state)
            else:
                await app(scope, receive, respond)
            # No answer at all: the client left before it was sent (nginx's 499), unless the
            # protocol ended the request and answered it itself.
            status = state[0] or scope.get(CLOSED_WITH, CLIENT_CLOSED)
        finally:
            elapsed = time.perf_counter() - start
            status = state[0] or status
            self.metrics.request_finished(series, status, elapsed)
            self.access_log.record(rid, method, path, status, elapsed * 1000, request_size,
                                   state[1])

    async def _call_api(self, app: Any, scope: Scope, receive: Receive, send: Send,
                        state: list[Any]) -> None:
        limit = self.max_concurrency
        if limit is not None and self.active >= limit:
            await _answer(send, 503, self._too_busy, (b"retry-after", b"1"),
                          state=scope.get(RESPONSE_STATE))
            return
        self.active += 1
        try:
            if self.timeout is None:
                await app(scope, receive, send)
                return
            task = asyncio.current_task()
            assert task is not None
            self._deadlines[task] = time.monotonic() + self.timeout
            if self._sweeper is None:
                self._sweeper = asyncio.get_running_loop().call_later(self._sweep_every,
                                                                      self._sweep)
            try:
                await app(scope, receive, send)
            except asyncio.CancelledError:
                if task not in self._expired:
                    raise  # not ours: the client left or the server is stopping
                self._expired.discard(task)
                task.uncancel()
                if not state[0]:  # nothing sent yet: the answer is ours to give
                    await _answer(send, 504, self._too_slow, state=scope.get(RESPONSE_STATE))
            finally:
                self._deadlines.pop(task, None)
                self._expired.discard(task)
        finally:
            self.active -= 1

    def _sweep(self) -> None:
        """Cancel the API calls past their deadline; come back while any are in flight."""
        self._sweeper = None
        now = time.monotonic()
        for task, deadline in self._deadlines.items():
            if deadline <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        if self._deadlines:
            self._sweeper = asyncio.get_running_loop().call_later(self._sweep_every, self._sweep)


async def _answer(send: Send, status: int, body: bytes, *extra: tuple[bytes, bytes],
                  state: list[Any] | None = None) -> None:
    headers = [_JSON, (b"content-length", str(len(body)).encode()), *extra]
    if state is not None:  # a direct call: no wrapper adds the id header
        answered(state, status, headers, len(body))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
