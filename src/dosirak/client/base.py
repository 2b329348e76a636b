"""What the sync and async clients share: the API table, calls as requests, answers as values.

The two clients differ only in how they send requests (``httpx.Client`` or
``httpx.AsyncClient``); everything that decides what to send and what an answer means lives
here, so both behave the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from dosirak.client.decoding import decode_body
from dosirak.client.encoding import NPY_MEDIA_TYPE, Body, encode_call
from dosirak.client.errors import error_from_answer
from dosirak.client.schema import RemoteAPI, apis_from_openapi
from dosirak.exceptions import InvalidArgument, ServiceUnreachable

DEFAULT_TIMEOUT = 30.0
_FIRST_POLL = 0.05  # seconds between readiness checks, growing to _LAST_POLL
_LAST_POLL = 0.5


class ClientBase:
    """The state and logic of a client of one running service (see ``SyncHTTPClient``)."""

    def __init__(self, url: str, *, timeout: float, headers: dict[str, str] | None,
                 token: str | None = None) -> None:
        self.url = normalize_url(url)
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise InvalidArgument(f"timeout must be a positive number of seconds, got "
                                  f"{timeout!r}")
        self.timeout = float(timeout)
        self.headers = dict(headers or {})
        if token is not None:
            if not isinstance(token, str) or not token.strip() or any(
                    ch in token for ch in "\r\n"):
                raise InvalidArgument("token must be the service's API token as a non-empty "
                                      "string (api_server.auth)")
            self.headers["authorization"] = f"Bearer {token.strip()}"
        #: The service's inference APIs by name, read from its ``/docs.json``.
        self.apis: dict[str, RemoteAPI] = {}
        self.service_name = ""
        self._accept: dict[str, dict[str, str]] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, apis={sorted(self.apis)})"

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not found: say which APIs there are.
        apis = self.__dict__.get("apis")
        if apis is None or name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(f"the service at {self.__dict__.get('url')} has no API {name!r}; "
                             f"its APIs: {sorted(apis)}")

    # ----- building from the schema ---------------------------------------------------------

    def _build(self, document: Any) -> None:
        self.apis = apis_from_openapi(document)
        self.service_name = str(document.get("info", {}).get("title", ""))
        for api in self.apis.values():
            # .npy answers keep the array's dtype and skip a text round trip.
            self._accept[api.name] = {"accept": NPY_MEDIA_TYPE} \
                if NPY_MEDIA_TYPE in api.response else {}
            if hasattr(type(self), api.name) or api.name in self.__dict__:
                continue  # an API called "close" stays reachable through call("close", ...)
            setattr(self, api.name, self._method(api))

    def _method(self, api: RemoteAPI) -> Callable[..., Any]:
        raise NotImplementedError

    def _api(self, name: str) -> RemoteAPI:
        api = self.apis.get(name)
        if api is None:
            raise InvalidArgument(f"the service at {self.url} has no API {name!r}; its APIs: "
                                  f"{sorted(self.apis)}")
        return api

    # ----- requests and answers -------------------------------------------------------------

    def _prepare(self, api: RemoteAPI, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> tuple[Body, dict[str, str]]:
        body = encode_call(api, args, kwargs)
        return body, {"content-type": body.content_type, **self._accept[api.name]}

    def _result(self, response: httpx.Response, where: str) -> Any:
        if response.status_code >= 400:
            raise error_from_answer(response.status_code, response.content, response.headers,
                                    where)
        return decode_body(response.content, response.headers.get("content-type"))

    def _unreachable(self, error: httpx.TransportError, where: str) -> ServiceUnreachable:
        if isinstance(error, httpx.TimeoutException):
            return ServiceUnreachable(f"{where} got no answer within {self.timeout:g} s "
                                      f"({type(error).__name__}); raise the client's timeout= "
                                      "if the service is slow", status=504)
        return ServiceUnreachable(f"{where} failed: {error or type(error).__name__}; is the "
                                  f"service running at {self.url}? (wait_ready=True waits for "
                                  "it to start)")


class ReadinessWait:
    """The state of a wait for ``/readyz`` to answer 200: when to poll next, and why not yet."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.delay = _FIRST_POLL
        self.last = "no answer yet"

    def answered(self, response: httpx.Response) -> bool:
        """Record an answer; True when it says the service is ready."""
        if response.status_code == 200:
            return True
        self.last = f"{response.status_code} {response.text.strip()[:200]}"
        return False

    def failed(self, error: Exception) -> None:
        """Record a request that got no answer (the server is not listening yet)."""
        self.last = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__

    def next_delay(self) -> float | None:
        """Seconds to sleep before the next poll, or None when the time is up."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return None
        delay = min(self.delay, remaining)
        self.delay = min(self.delay * 1.5, _LAST_POLL)
        return delay

    def poll_timeout(self) -> float:
        """The timeout of one poll: what is left of the wait, at least a little."""
        return max(0.05, min(self.timeout, self.deadline - time.monotonic()))

    def error(self) -> ServiceUnreachable:
        """The exception for a wait that ran out of time."""
        return ServiceUnreachable(f"the service at {self.url} was not ready after "
                                  f"{self.timeout:g} s (last answer from /readyz: {self.last}); "
                                  "check its log, or wait longer with timeout=")


def normalize_url(url: str) -> str:
    """``url`` with a scheme and without a trailing slash (``localhost:3000`` is http)."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidArgument(f"the service URL must be a string like 'http://127.0.0.1:3000', "
                              f"got {url!r}")
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    if not url.startswith(("http://", "https://")):
        raise InvalidArgument(f"the service URL must start with http:// or https://, got {url!r}")
    return url
