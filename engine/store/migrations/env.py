"""Alembic environment: runs on the connection engine.store.schema hands over (sync, via run_sync)."""

from __future__ import annotations

from alembic import context

from engine.store.models import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
