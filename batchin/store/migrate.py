"""Apply Alembic migrations from a running event loop (at start-up and by `batchin db upgrade`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

from batchin.store.database import Database

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(connection: Any | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


async def upgrade(database: Database, revision: str = "heads") -> None:
    # A write transaction: on SQLite it holds the write lock, so two processes migrate one at a time.
    async with database.write() as conn:
        await conn.run_sync(lambda sync_conn: command.upgrade(alembic_config(sync_conn), revision))


async def current_revision(database: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with database.read() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
