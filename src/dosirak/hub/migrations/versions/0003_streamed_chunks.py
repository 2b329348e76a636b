"""Chunks taken by an assembly (streamed into a draft in one hub process, not stored as
objects): ``upload_chunks.streamed_by`` names that process; NULL means an object holds it.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column("upload_chunks", sa.Column("streamed_by", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("upload_chunks") as batch:
        batch.drop_column("streamed_by")
