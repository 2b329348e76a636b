"""The first schema of the hub: tokens, versions and what they hold, aliases, blobs, uploads,
and the append-only event log.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

_TIME = sa.DateTime(timezone=True)
_NO_CHANGE = "the event log is append-only: events are never changed or deleted"


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.String(32), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("created_by", sa.String(63)),
        sa.Column("expires_at", _TIME),
        sa.Column("last_used_at", _TIME),
        sa.Column("revoked_at", _TIME),
    )
    op.create_table(
        "versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("version", sa.String(63), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("info", sa.Text, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("creation_time", _TIME, nullable=False),
        sa.Column("pushed_at", _TIME, nullable=False),
        sa.Column("pushed_by", sa.String(63), nullable=False),
        sa.UniqueConstraint("kind", "name", "version", name="uq_versions_tag"),
    )
    op.create_index("ix_versions_kind_pushed", "versions", ["kind", "pushed_at"])
    op.create_index("ix_versions_kind_name_pushed", "versions", ["kind", "name", "pushed_at"])
    _version_child("version_labels",
                   sa.Column("key", sa.String(255), primary_key=True),
                   sa.Column("value", sa.String(255), nullable=False))
    op.create_index("ix_version_labels_kv", "version_labels", ["key", "value"])
    _version_child("version_files",
                   sa.Column("path", sa.String(1024), primary_key=True),
                   sa.Column("size", sa.BigInteger, nullable=False),
                   sa.Column("sha256", sa.String(64), nullable=False))
    op.create_index("ix_version_files_sha256", "version_files", ["sha256"])
    _version_child("version_refs",
                   sa.Column("model_name", sa.String(63), primary_key=True),
                   sa.Column("model_version", sa.String(63), primary_key=True),
                   sa.Column("digest", sa.String(64), nullable=False))
    op.create_index("ix_version_refs_model", "version_refs", ["model_name", "model_version"])
    op.create_table(
        "aliases",
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("alias", sa.String(63), primary_key=True),
        sa.Column("version", sa.String(63), nullable=False),
        sa.Column("moved_at", _TIME, nullable=False),
        sa.Column("moved_by", sa.String(63), nullable=False),
    )
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("touched_at", _TIME, nullable=False),
    )
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("version", sa.String(63), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("archive_size", sa.BigInteger, nullable=False),
        sa.Column("chunk_size", sa.Integer, nullable=False),
        sa.Column("token_id", sa.String(16), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
    )
    op.create_table(
        "upload_chunks",
        sa.Column("upload_id", sa.String(32), sa.ForeignKey("uploads.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("index", sa.Integer, primary_key=True),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("actor", sa.String(63), nullable=False),
        sa.Column("token_id", sa.String(16)),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_events_at", "events", ["at"])
    _append_only("events")


def _version_child(table: str, *columns: sa.Column) -> None:
    op.create_table(
        table,
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id", ondelete="CASCADE"),
                  primary_key=True),
        *columns,
    )


def _append_only(table: str) -> None:
    """Refuse UPDATE and DELETE on ``table`` in the database itself."""
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{_NO_CHANGE}'); END")
        return
    op.execute(f"CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS "
               f"$$ BEGIN RAISE EXCEPTION '{_NO_CHANGE}'; END $$")
    op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
               f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()")


def downgrade() -> None:
    for table in ("events", "upload_chunks", "uploads", "blobs", "aliases", "version_refs",
                  "version_files", "version_labels", "versions", "tokens"):
        op.drop_table(table)
