"""``dosirak.Context``: what an API may read of its request and set on its response.

    >>> @svc.api(input=JSON(), output=JSON())
    ... def classify(features: dict, ctx: dosirak.Context) -> dict:
    ...     user = ctx.request.headers.get("x-user")         # also .cookies, .query_params
    ...     ctx.response.status_code = 202
    ...     ctx.response.headers["x-model-version"] = "3"
    ...     ctx.response.set_cookie("seen", "1", max_age=3600)
    ...     return {"user": user, "db": ctx.state["db"]}
    ...
    >>> @svc.on_startup
    ... def open_db(ctx: dosirak.Context) -> None:
    ...     ctx.state["db"] = connect()                       # shared with every request

An API asks for a context with a parameter annotated ``dosirak.Context`` (or, in ``@svc.api``
functions, a parameter named ``ctx``); only those APIs get one, built per request, so the
others pay nothing. ``request`` is a Starlette ``Request`` whose body was already read
(``headers``, ``cookies``, ``query_params``, ``url``, ``client``); ``state`` is one dict per API
worker, the same that ``on_startup`` and ``on_shutdown`` hooks receive.
"""

from __future__ import annotations

from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any, Literal


@dataclass
class Cookie:
    """A cookie to set on the response (``ctx.response.cookies.append(Cookie(...))``)."""

    key: str
    value: str
    max_age: int | None = None
    expires: int | None = None
    path: str = "/"
    domain: str | None = None
    secure: bool = False
    httponly: bool = False
    samesite: Literal["lax", "strict", "none"] | None = "lax"

    def header(self) -> bytes:
        """The ``Set-Cookie`` header value."""
        cookie: SimpleCookie = SimpleCookie()
        cookie[self.key] = self.value
        morsel = cookie[self.key]
        for name, value in (("max-age", self.max_age), ("expires", self.expires),
                            ("path", self.path), ("domain", self.domain),
                            ("samesite", self.samesite)):
            if value is not None:
                morsel[name] = value
        if self.secure:
            morsel["secure"] = True
        if self.httponly:
            morsel["httponly"] = True
        return morsel.OutputString().encode("latin-1")


class ResponseContext:
    """What an API sets on its answer: ``status_code``, ``headers``, ``cookies``."""

    def __init__(self) -> None:
        from starlette.datastructures import MutableHeaders

        #: The status of a successful call (an exception still gets its error status).
        self.status_code = 200
        self.headers = MutableHeaders()
        self.cookies: list[Cookie] = []

    def set_cookie(self, key: str, value: str = "", **options: Any) -> None:
        """Add a cookie (options as ``Cookie``: max_age, expires, path, domain, secure,
        httponly, samesite)."""
        self.cookies.append(Cookie(key, value, **options))

    def delete_cookie(self, key: str, path: str = "/", domain: str | None = None) -> None:
        """Ask the client to forget a cookie."""
        self.cookies.append(Cookie(key, "", max_age=0, expires=0, path=path, domain=domain))

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers to add to the answer, ``Set-Cookie`` ones included."""
        headers = list(self.headers.raw)
        headers += [(b"set-cookie", cookie.header()) for cookie in self.cookies]
        return headers


class Context:
    """The request an API is answering, its response options, and the worker's shared state."""

    def __init__(self, request: Any = None, state: dict[str, Any] | None = None) -> None:
        #: The Starlette ``Request`` (None in startup and shutdown hooks).
        self.request = request
        self.response = ResponseContext()
        #: One dict per API worker, shared by every request and the lifecycle hooks.
        self.state: dict[str, Any] = state if state is not None else {}

    def __repr__(self) -> str:
        where = f"{self.request.method} {self.request.url.path}" if self.request else "hook"
        return f"Context({where}, state keys={sorted(self.state)})"


def is_context_annotation(annotation: Any) -> bool:
    """Whether a parameter annotation asks for the context."""
    return annotation is Context or annotation == "Context" or (
        isinstance(annotation, str) and annotation.endswith(".Context"))
