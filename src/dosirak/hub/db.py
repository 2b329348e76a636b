"""The hub's database: tables (SQLAlchemy 2), sessions, and schema migrations (Alembic).

SQLite by default (one file, WAL journal, write transactions begun ``IMMEDIATE`` so that
concurrent writers queue on the lock instead of failing), PostgreSQL in production
(``postgresql://...``, driven by psycopg 3). Every piece of state lives here or in the object
store, so any number of hub processes can serve one database.

Tables: ``tokens``; ``versions`` (one row per model or bento version, immutable) with its
``version_labels``, ``version_files`` (path -> sha256 of a blob) and ``version_refs`` (the models
a bento uses); ``aliases``; ``blobs``; ``uploads`` and ``upload_chunks`` (pushes in progress);
``events`` (append-only: the migration adds triggers that refuse UPDATE and DELETE).
"""

from __future__ import annotations

import datetime
import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from dosirak.exceptions import InvalidArgument

MIGRATIONS = Path(__file__).with_name("migrations")
_ADVISORY_LOCK = 0x646F7369  # "dosi": one hub at a time migrates a PostgreSQL database


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class UTCDateTime(TypeDecorator[datetime.datetime]):
    """A timestamp stored in UTC and read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime.datetime | None, dialect: Any) -> Any:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to the hub database")
        return None if value is None else value.astimezone(datetime.UTC)

    def process_result_value(self, value: datetime.datetime | None, dialect: Any) -> Any:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=datetime.UTC)
        return value


class Base(DeclarativeBase):
    pass


class Token(Base):
    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str | None] = mapped_column(String(63))
    expires_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime())


class Version(Base):
    __tablename__ = "versions"
    __table_args__ = (
        UniqueConstraint("kind", "name", "version", name="uq_versions_tag"),
        Index("ix_versions_kind_pushed", "kind", "pushed_at"),
        Index("ix_versions_kind_name_pushed", "kind", "name", "pushed_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(63))
    version: Mapped[str] = mapped_column(String(63))
    digest: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    info: Mapped[str] = mapped_column(Text)  # model.yaml / bento.yaml as pushed
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    creation_time: Mapped[datetime.datetime] = mapped_column(UTCDateTime())
    pushed_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime())
    pushed_by: Mapped[str] = mapped_column(String(63))


class VersionLabel(Base):
    __tablename__ = "version_labels"
    __table_args__ = (Index("ix_version_labels_kv", "key", "value"),)

    version_id: Mapped[int] = mapped_column(
        ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))


class VersionFile(Base):
    __tablename__ = "version_files"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)


class VersionRef(Base):
    """A model version a bento version uses: that model cannot be deleted while it is here."""

    __tablename__ = "version_refs"
    __table_args__ = (Index("ix_version_refs_model", "model_name", "model_version"),)

    version_id: Mapped[int] = mapped_column(
        ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(63), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(63), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))


class Alias(Base):
    __tablename__ = "aliases"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    alias: Mapped[str] = mapped_column(String(63), primary_key=True)
    version: Mapped[str] = mapped_column(String(63))
    moved_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime())
    moved_by: Mapped[str] = mapped_column(String(63))


class Blob(Base):
    """A file's content in the object store, under its sha256; stored once however many
    versions hold it. ``touched_at`` keeps a blob a push is about to use from the collector."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    touched_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime())


class Upload(Base):
    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(63))
    version: Mapped[str] = mapped_column(String(63))
    digest: Mapped[str] = mapped_column(String(64))
    archive_size: Mapped[int] = mapped_column(BigInteger)
    chunk_size: Mapped[int] = mapped_column(Integer)
    token_id: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime())


class UploadChunk(Base):
    __tablename__ = "upload_chunks"

    upload_id: Mapped[str] = mapped_column(
        ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))


class AuthFailure(Base):
    """A failed sign-in attempt from ``client`` at ``at`` (seconds since the epoch); kept for
    the limiter's window only (``tokens.FailureLimiter``)."""

    __tablename__ = "auth_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client: Mapped[str] = mapped_column(String(64))
    at: Mapped[float] = mapped_column(Double)


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime.datetime] = mapped_column(UTCDateTime(), index=True)
    action: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(255))
    actor: Mapped[str] = mapped_column(String(63))
    token_id: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


def database_url(url: str) -> str:
    """``postgresql://`` means psycopg 3; a plain path means a SQLite file."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if parsed.drivername not in ("sqlite", "postgresql+psycopg"):
        raise InvalidArgument(f"database URL {parsed.render_as_string()!r}: the hub runs on "
                              "sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
    return url


class Database:
    """The engine, and sessions that commit on success and roll back on error."""

    def __init__(self, url: str) -> None:
        self.url = database_url(url)
        self.sqlite = self.url.startswith("sqlite")
        options: dict[str, Any] = {}
        if self.sqlite:
            options["connect_args"] = {"timeout": 60, "check_same_thread": False}
        else:
            options.update(pool_pre_ping=True, pool_size=8, max_overflow=8)
        self.engine: Engine = create_engine(self.url, **options)
        if self.sqlite:
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        self._writer = self.engine.execution_options(dosirak_write=True)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that writes: on SQLite it takes the write lock at once."""
        with Session(self._writer, expire_on_commit=False) as session, session.begin():
            yield session

    def migrate(self) -> tuple[str | None, str | None]:
        """Bring the schema to the newest revision; one process at a time does it. Returns
        the revisions before and after (None: an empty database). Alembic's own INFO lines
        are kept out of the hub's log, which says what changed (``Hub.start``)."""
        with _quiet("alembic"):  # it logs as it is imported, too
            from alembic import command
            from alembic.config import Config
            from alembic.runtime.migration import MigrationContext

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with _quiet("alembic"), self._migration_lock() as connection:
            before = MigrationContext.configure(connection).get_current_revision()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()
            after = MigrationContext.configure(connection).get_current_revision()
            connection.commit()
        return before, after

    @contextmanager
    def _migration_lock(self) -> Iterator[Connection]:
        if self.sqlite:
            path = Path(make_url(self.url).database or "hub.db")
            with open(f"{path}.migrate-lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                with self.engine.connect() as connection:
                    yield connection
            return
        with self.engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _ADVISORY_LOCK})
            connection.commit()
            try:
                yield connection
            finally:
                connection.rollback()
                connection.execute(text("SELECT pg_advisory_unlock(:key)"),
                                   {"key": _ADVISORY_LOCK})
                connection.commit()

    def close(self) -> None:
        self.engine.dispose()


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Only warnings and errors from ``logger_name`` while the block runs."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Transactions are begun by _sqlite_begin, not by the driver's own guesswork.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON",
                   "busy_timeout=60000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    options = connection.get_execution_options()
    connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get("dosirak_write") else "BEGIN")


def sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL (to create its folder), else None."""
    parsed = make_url(database_url(url))
    return parsed.database if parsed.drivername.startswith("sqlite") else None


__all__ = ["Alias", "AuthFailure", "Blob", "Database", "Event", "Token", "Upload",
           "UploadChunk", "Version", "VersionFile", "VersionLabel", "VersionRef", "utcnow"]
