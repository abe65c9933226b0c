"""Emptying a PostgreSQL test database between tests (SQLite databases are per-test files)."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from batchin.services import Services
from batchin.store.tables import metadata

_ATTEMPTS = 5


async def empty_tables(services: Services) -> None:
    """Finish every background write first: a writer racing the TRUNCATE deadlocks on PostgreSQL
    (the trace and prompt-run buffers, and the keys' last-used stamps written after each call).
    A write still finishing after the test (a call's settlement the client did not wait for, an
    engine's crash-loop bookkeeping) can still meet the TRUNCATE; PostgreSQL then aborts one of the
    two, and when that is the TRUNCATE it is run again once the other write is done."""
    await services.traces.flush()
    await services.prompts.recorder.flush()
    await services.auth.drain()
    if services.database.dialect != "postgresql":
        return
    tables = ", ".join(table.name for table in metadata.sorted_tables)
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            async with services.database.write() as conn:
                await conn.execute(text(f"TRUNCATE {tables} CASCADE"))
            return
        except DBAPIError as exc:
            if "deadlock detected" not in str(exc) or attempt == _ATTEMPTS:
                raise
            await asyncio.sleep(0.1 * attempt)
