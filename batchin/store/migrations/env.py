"""Alembic environment: runs on a connection handed in by batchin.store.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from batchin.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `batchin db upgrade`, which provides the connection")

if connection.dialect.name == "postgresql":
    # Two server processes starting at once must not both apply the same revision.
    connection.execute(text("SELECT pg_advisory_xact_lock(7318201)"))

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
