"""Access tokens: ``dsk_<id>_<secret>``, stored as the sha256 of the secret, never the secret.

The secret is 32 random bytes, so one sha256 is as good as a slow password hash here (nobody can
guess through 2**256 candidates) and checking a token costs microseconds. Scopes nest: ``admin``
includes ``write``, which includes ``read``. A token may expire; revoked and expired tokens are
refused like unknown ones (401). Failed attempts are counted per client address, in the
database (shared by every hub process), and refused with 429 for a while past ``MAX_FAILURES``
(``FailureLimiter``).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from dosirak.exceptions import AlreadyExists, DosirakError, InvalidArgument, NotFound
from dosirak.hub.db import AuthFailure, Database, Token, utcnow

SCOPES = ("read", "write", "admin")
PREFIX = "dsk"
_TOKEN = re.compile(rf"{PREFIX}_([0-9a-f]{{12}})_([A-Za-z0-9_-]{{43}})")
_DURATION = re.compile(r"([0-9]+)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LAST_USED_STEP = datetime.timedelta(seconds=60)  # last_used_at is written at most this often
MAX_FAILURES = 10  # failed attempts per client within FAILURE_WINDOW before 429
FAILURE_WINDOW = 60.0


class Unauthorized(DosirakError):
    """No token, or one that is unknown, revoked or expired (HTTP 401)."""

    status = 401

    def __init__(self, message: str = "", **fields: object) -> None:
        super().__init__(message, **fields)  # type: ignore[arg-type]
        self.headers.setdefault("WWW-Authenticate", 'Bearer realm="dosirak-hub"')


class Forbidden(DosirakError):
    """A valid token without the scope the request needs (HTTP 403)."""

    status = 403


class TooManyFailures(DosirakError):
    """Too many failed attempts from one client (HTTP 429, with Retry-After)."""

    status = 429
    retryable = True

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, headers={"Retry-After": str(math.ceil(retry_after))})
        self.retry_after = retry_after


@dataclass(frozen=True)
class Principal:
    """Who makes a request: the token's id, name and scopes."""

    token_id: str
    name: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"token {self.name!r} lacks the {scope!r} scope (it has "
                            f"{', '.join(sorted(self.scopes))}); ask an admin for a token with "
                            f"`dosirak hub token create NAME --scope {scope}`")


def implied(scopes: list[str] | tuple[str, ...] | str) -> frozenset[str]:
    """Every scope that ``scopes`` grants (admin > write > read)."""
    names = scopes.split(",") if isinstance(scopes, str) else list(scopes)
    granted: set[str] = set()
    for scope in names:
        if scope not in SCOPES:
            raise InvalidArgument(f"scope {scope!r} is not known; use one of "
                                  f"{', '.join(SCOPES)}")
        granted.update(SCOPES[:SCOPES.index(scope) + 1])
    return frozenset(granted)


def parse_duration(text: str) -> datetime.timedelta:
    """``30d``, ``12h``, ``1w2d``... as a timedelta."""
    spec = text.replace(" ", "").lower()
    matches = list(_DURATION.finditer(spec))
    if not matches or "".join(m.group(0) for m in matches) != spec:
        raise InvalidArgument(f"duration {text!r} is not understood; write e.g. 30d, 12h, 90m "
                              "or 1w")
    seconds = sum(int(m.group(1)) * _UNITS[m.group(2)] for m in matches)
    if seconds <= 0:
        raise InvalidArgument(f"duration {text!r} must be longer than zero")
    return datetime.timedelta(seconds=seconds)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(session: Session, name: str, scopes: list[str] | tuple[str, ...], *,
           expires_in: datetime.timedelta | None = None,
           created_by: str | None = None) -> tuple[Token, str]:
    """A new token; returns its row and the full token text, shown this once only."""
    from dosirak.tag import is_valid_part

    if not is_valid_part(name):
        raise InvalidArgument(f"token name {name!r} is not valid: lowercase letters, digits, "
                              "'-', '_' and '.', at most 63 characters")
    granted = implied(scopes)
    if session.scalar(select(Token.id).where(Token.name == name)) is not None:
        raise AlreadyExists(f"a token named {name!r} exists already; pick another name or "
                            "revoke it first")
    token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    now = utcnow()
    row = Token(id=token_id, name=name, secret_hash=hash_secret(secret),
                scopes=",".join(s for s in SCOPES if s in granted), created_at=now,
                created_by=created_by,
                expires_at=None if expires_in is None else now + expires_in)
    session.add(row)
    session.flush()
    return row, f"{PREFIX}_{token_id}_{secret}"


def find(session: Session, name_or_id: str) -> Token:
    row = session.scalar(select(Token).where((Token.name == name_or_id)
                                             | (Token.id == name_or_id)))
    if row is None:
        raise NotFound(f"no token named {name_or_id!r}; see them with `dosirak hub token list`")
    return row


def check(session: Session, text: str | None, now: datetime.datetime | None = None) -> Token:
    """The token row ``text`` names, or Unauthorized (one message for every failure, so that
    an attacker learns nothing of which part was wrong)."""
    refused = Unauthorized("a valid hub token is needed: pass one in the Authorization header "
                           "(Bearer), or sign in with `dosirak hub login URL --token T`")
    match = _TOKEN.fullmatch(text or "")
    if match is None:
        raise refused
    row = session.get(Token, match.group(1))
    now = now or utcnow()
    if (row is None or not hmac.compare_digest(row.secret_hash, hash_secret(match.group(2)))
            or row.revoked_at is not None
            or (row.expires_at is not None and row.expires_at <= now)):
        raise refused
    return row


def needs_touch(row: Token, now: datetime.datetime) -> bool:
    return row.last_used_at is None or now - row.last_used_at >= _LAST_USED_STEP


def describe(row: Token) -> dict[str, object]:
    def when(value: datetime.datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    return {"id": row.id, "name": row.name, "scopes": row.scopes.split(","),
            "created_at": when(row.created_at), "created_by": row.created_by,
            "expires_at": when(row.expires_at), "last_used_at": when(row.last_used_at),
            "revoked_at": when(row.revoked_at)}


class FailureLimiter:
    """At most ``limit`` failed attempts per client within ``window`` seconds; past that the
    client is refused until enough of its failures have left the window.

    Failures are rows of the hub's database, so every hub process on it (behind one load
    balancer) counts them together, and a restart forgets nothing. ``clock`` (seconds since
    the epoch: the processes compare their times) is injectable for tests.
    """

    def __init__(self, db: Database, limit: int = MAX_FAILURES, window: float = FAILURE_WINDOW,
                 clock: Callable[[], float] = time.time) -> None:
        self.db, self.limit, self.window, self.clock = db, limit, window, clock

    def check(self, client: str, session: Session | None = None) -> None:
        """Refuse ``client`` (TooManyFailures, 429) while it has ``limit`` recent failures;
        reads in ``session`` when given, else in a transaction of its own."""
        if session is None:
            with self.db.read() as own:
                return self.check(client, own)
        now = self.clock()
        recent = session.scalars(
            select(AuthFailure.at).where(AuthFailure.client == _key(client),
                                         AuthFailure.at > now - self.window)
            .order_by(AuthFailure.at.desc()).limit(self.limit)).all()
        if len(recent) >= self.limit:
            wait = recent[-1] + self.window - now
            raise TooManyFailures(f"too many failed sign-in attempts from {client}; try again "
                                  f"in {math.ceil(wait)} s", retry_after=max(wait, 1.0))
        return None

    def failed(self, client: str) -> None:
        """Count a failure of ``client``; failures older than the window are dropped."""
        now = self.clock()
        with self.db.write() as session:
            session.execute(delete(AuthFailure).where(AuthFailure.at <= now - self.window))
            session.add(AuthFailure(client=_key(client), at=now))


def _key(client: str) -> str:
    return client[:64]
