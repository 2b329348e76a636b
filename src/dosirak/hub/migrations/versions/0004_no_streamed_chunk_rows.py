"""Chunks taken by an assembly have no row any more: the assembly that holds them keeps their
sha256 (a row now always means an object holds the chunk). Rows of streamed chunks left by an
older hub meant nothing without their process; they go with the column.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.execute("DELETE FROM upload_chunks WHERE streamed_by IS NOT NULL")
    with op.batch_alter_table("upload_chunks") as batch:
        batch.drop_column("streamed_by")


def downgrade() -> None:
    op.add_column("upload_chunks", sa.Column("streamed_by", sa.String(16), nullable=True))
