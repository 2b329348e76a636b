"""Alembic's entry point for the hub: migrations run on the connection ``Database.migrate``
hands over (under its lock), never on a URL read from a file."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
