"""Emptying a PostgreSQL test database between tests (SQLite databases are per-test files)."""

from __future__ import annotations

from sqlalchemy import text

from batchin.services import Services
from batchin.store.tables import metadata


async def empty_tables(services: Services) -> None:
    """Finish every background write first: a writer racing the TRUNCATE deadlocks on PostgreSQL
    (the trace and prompt-run buffers, and the keys' last-used stamps written after each call)."""
    await services.traces.flush()
    await services.prompts.recorder.flush()
    await services.auth.drain()
    if services.database.dialect == "postgresql":
        tables = ", ".join(table.name for table in metadata.sorted_tables)
        async with services.database.write() as conn:
            await conn.execute(text(f"TRUNCATE {tables} CASCADE"))
