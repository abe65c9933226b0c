"""What the retention purge (core/retention.py) removes of the prompt registry: run samples (the
inputs and outputs of recorded chat calls, kept for replay) older than
BATCHIN_PROMPT_SAMPLE_RETENTION_DAYS. An experiment copies the samples it replays when it starts
(prompt_replays), so purging them never breaks one under way. Registries, versions, run counts,
label moves (signed) and regression reports are kept."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select

from batchin.core.retention import StoreSizes
from batchin.store.database import Database
from batchin.store.tables import prompt_samples

__all__ = ["PromptSamplePurger"]


class PromptSamplePurger:
    kind = "prompt_samples"

    def __init__(self, database: Database) -> None:
        self._db = database

    async def purge(self, before: datetime, limit: int) -> int:
        oldest = (
            select(prompt_samples.c.id)
            .where(prompt_samples.c.created_at < before)
            .order_by(prompt_samples.c.created_at)
            .limit(limit)
        )
        async with self._db.write() as conn:
            ids = (await conn.execute(oldest)).scalars().all()
            if not ids:
                return 0
            removed = await conn.execute(delete(prompt_samples).where(prompt_samples.c.id.in_(ids)))
        return int(removed.rowcount)

    async def measure(self) -> StoreSizes:
        async with self._db.read() as conn:
            count = await conn.scalar(select(func.count()).select_from(prompt_samples))
        return StoreSizes(rows={"prompt_samples": int(count or 0)})
