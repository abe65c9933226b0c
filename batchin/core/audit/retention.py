"""The audit log's place in retention: none. Signed records and the RFC 6962 transparency log are
append-only, so the retention purge (core/retention.py) never deletes them, whatever the other
retention settings say; removing a leaf would break every inclusion and consistency proof after
it. Only their size is reported, from the log's own tree size (one row, no count)."""

from __future__ import annotations

from sqlalchemy import select

from batchin.core.retention import StoreSizes
from batchin.store.database import Database
from batchin.store.tables import vaas_log_state

__all__ = ["AuditLogSize"]


class AuditLogSize:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def measure(self) -> StoreSizes:
        async with self._db.read() as conn:
            size = await conn.scalar(select(vaas_log_state.c.tree_size).where(vaas_log_state.c.id == 1))
        return StoreSizes(rows={"vaas_records": int(size or 0)})
