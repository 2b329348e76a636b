"""The hub's state and the operations every part shares: settings, the database, the object
store, who a token is, and the event log.

HTTP lives in ``api.py`` and ``dashboard.py``; what is stored and found in ``catalog.py``;
pushes and pulls in ``transfers.py``; the garbage collector in ``collector.py``.
"""

from __future__ import annotations

import datetime
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dosirak.hub import tokens
from dosirak.hub.db import Database, Event, Token, sqlite_file, utcnow
from dosirak.hub.secret_file import write_secret
from dosirak.hub.storage import Storage
from dosirak.hub.tokens import FailureLimiter, Principal

ADMIN_TOKEN_FILE = "admin-token"
DEFAULT_PORT = 3333
DEFAULT_CHUNK_SIZE = 8 << 20
MAX_CHUNK_SIZE = 64 << 20
_log = logging.getLogger("dosirak.hub")


@dataclass(frozen=True)
class HubSettings:
    """Where the hub keeps things. ``data`` holds the SQLite file, local objects, the admin
    token file and scratch space for checking pushes; ``db`` and ``storage`` move the first
    two elsewhere (PostgreSQL, S3)."""

    data: Path
    db: str | None = None
    storage: str | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    max_size: int = 64 << 30  # bytes one pushed version may unpack to
    upload_ttl: datetime.timedelta = datetime.timedelta(days=1)
    # An assembly (assembly.py) that gets no chunk for this long stops; its chunks are sent again.
    assembly_idle: datetime.timedelta = datetime.timedelta(minutes=10)
    storage_options: dict[str, Any] = field(default_factory=dict)

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{self.data.resolve() / 'hub.db'}"

    @property
    def storage_url(self) -> str:
        return self.storage or str(self.data.resolve() / "objects")


class Hub:
    """One hub process's handle on the shared state."""

    def __init__(self, settings: HubSettings) -> None:
        self.settings = settings
        settings.data.mkdir(parents=True, exist_ok=True)
        if (path := sqlite_file(settings.db_url)) is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = Database(settings.db_url)
        self.storage = Storage(settings.storage_url, settings.storage_options or None)
        self.scratch = settings.data / "scratch"
        self.failures = FailureLimiter(self.db)
        self.assemblies: dict[str, Any] = {}  # upload id -> its Assembly in this process
        self.assemblies_lock = threading.Lock()

    def start(self) -> Path | None:
        """Migrate the schema and make the first admin token; returns its file if made now."""
        before, after = self.db.migrate()
        if before != after:
            _log.info("database schema upgraded from %s to revision %s",
                      f"revision {before}" if before else "empty", after)
        return self.ensure_admin_token()

    def close(self) -> None:
        self.db.close()

    # ----- tokens ----------------------------------------------------------------------------

    def ensure_admin_token(self) -> Path | None:
        """On the first start (no token at all), create the ``admin`` token and write it to
        ``DATA/admin-token`` (mode 0600)."""
        with self.db.read() as session:
            if session.scalar(select(Token.id).limit(1)) is not None:
                return None
        path = self.settings.data / ADMIN_TOKEN_FILE
        try:
            with self.db.write() as session:
                if session.scalar(select(Token.id).limit(1)) is not None:
                    return None
                row, secret = tokens.create(session, "admin", ["admin"])
                self.log_event(session, "token.create", f"token {row.name}", None,
                               {"scopes": row.scopes.split(","), "first_start": True})
                write_secret(path, secret + "\n")
        except IntegrityError:  # another hub process on this database made it first
            return None
        _log.warning("created the first admin token; it is in %s (mode 0600)", path)
        return path

    def authenticate(self, text: str | None, client: str) -> Principal:
        """The principal of a token, or Unauthorized (counted against ``client``)."""
        now = utcnow()
        try:
            with self.db.read() as session:
                self.failures.check(client, session)
                row = tokens.check(session, text, now)
        except tokens.Unauthorized:
            self.failures.failed(client)
            raise
        if tokens.needs_touch(row, now):
            with self.db.write() as session:
                fresh = session.get(Token, row.id)
                if fresh is not None:
                    fresh.last_used_at = now
        return Principal(row.id, row.name, tokens.implied(row.scopes))

    def create_token(self, by: Principal, name: str, scopes: list[str],
                     expires_in: datetime.timedelta | None) -> tuple[dict[str, Any], str]:
        by.require("admin")
        with self.db.write() as session:
            row, secret = tokens.create(session, name, scopes, expires_in=expires_in,
                                        created_by=by.name)
            self.log_event(session, "token.create", f"token {name}", by,
                           {"scopes": row.scopes.split(","),
                            "expires_at": tokens.describe(row)["expires_at"]})
            return tokens.describe(row), secret

    def list_tokens(self, by: Principal) -> list[dict[str, Any]]:
        by.require("admin")
        with self.db.read() as session:
            rows = session.scalars(select(Token).order_by(Token.created_at)).all()
            return [tokens.describe(row) for row in rows]

    def revoke_token(self, by: Principal, name: str) -> dict[str, Any]:
        by.require("admin")
        with self.db.write() as session:
            row = tokens.find(session, name)
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                self.log_event(session, "token.revoke", f"token {row.name}", by, {})
            return tokens.describe(row)

    # ----- events ----------------------------------------------------------------------------

    @staticmethod
    def log_event(session: Session, action: str, subject: str, by: Principal | None,
                  detail: dict[str, Any]) -> None:
        """Append an event in the caller's transaction: it is logged if and only if what it
        tells of happened."""
        session.add(Event(at=utcnow(), action=action, subject=subject,
                          actor=by.name if by else "hub", token_id=by.token_id if by else None,
                          detail=detail))

    def events(self, *, limit: int = 100, before: int | None = None,
               action: str | None = None, subject: str | None = None) -> list[dict[str, Any]]:
        query = select(Event).order_by(Event.id.desc()).limit(max(1, min(limit, 1000)))
        if before is not None:
            query = query.where(Event.id < before)
        if action:
            query = query.where(Event.action == action)
        if subject:
            query = query.where(Event.subject.contains(subject, autoescape=True))
        with self.db.read() as session:
            return [{"id": e.id, "at": e.at.isoformat(), "action": e.action,
                     "subject": e.subject, "actor": e.actor, "token_id": e.token_id,
                     "detail": e.detail} for e in session.scalars(query)]
