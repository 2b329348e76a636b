"""Request ids: the caller's ``x-request-id`` when it is a sane token, else a fresh one.

    >>> request_id(b"checkout-7f3a")       # from the request's header: kept
    'checkout-7f3a'
    >>> request_id(None)                   # none, or not sane (too long, odd characters): new
    '3f9c0a1b2d4e-1'

Generated ids are a random per-process prefix and a counter: unique across processes and
restarts, and about ten times cheaper than ``uuid4()`` on the request path. They are labels for
correlating log lines, not secrets.
"""

from __future__ import annotations

import contextvars
import itertools
import os
import re

HEADER = b"x-request-id"
#: The id of the request being handled, for code that runs inside it (the prediction log,
#: ``dosirak.monitor``); the server's traffic layer sets it when it tracks ids.
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("dosirak_request_id",
                                                                          default="-")
MAX_LENGTH = 128
# Letters, digits and the punctuation of common id schemes (UUIDs, base64, "trace:span"); nothing
# that could break a log line or a header (spaces, quotes, control characters).
_SANE = re.compile(rb"[A-Za-z0-9._:+/=-]{1,%d}" % MAX_LENGTH)


def _new_prefix() -> str:
    return os.urandom(6).hex() + "-"


_prefix = _new_prefix()
_counter = itertools.count(1)


def _after_fork() -> None:
    # A forked child must not hand out its parent's ids.
    global _prefix, _counter
    _prefix = _new_prefix()
    _counter = itertools.count(1)


os.register_at_fork(after_in_child=_after_fork)


def new_request_id() -> str:
    """A fresh id, unique across processes (random prefix) and within one (counter)."""
    return f"{_prefix}{next(_counter):x}"


def request_id(header: bytes | str | None) -> str:
    """The id to use for a request whose ``x-request-id`` header is ``header`` (or absent)."""
    if header:
        if isinstance(header, str):
            try:
                header = header.encode("ascii")
            except UnicodeEncodeError:
                return new_request_id()
        if _SANE.fullmatch(header):
            return header.decode("ascii")
    return new_request_id()


def request_id_from_headers(headers: list[tuple[bytes, bytes]] | list[list[bytes]]) -> str:
    """The id for an ASGI request, given ``scope["headers"]`` (lowercase names, as ASGI says)."""
    for name, value in headers:
        if name == HEADER:
            return request_id(value)
    return new_request_id()
