"""What the retention purge (core/retention.py) removes of webhooks: finished deliveries
(`delivered` or `failed`) older than BATCHIN_WEBHOOK_RETENTION_DAYS, counted from when they
finished, with every attempt recorded for them. Deliveries still pending or being sent are never
purged, and the signing secrets are kept."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select

from batchin.core.retention import StoreSizes
from batchin.store.database import Database
from batchin.store.tables import webhook_attempts, webhook_deliveries

__all__ = ["WebhookPurger"]

_FINISHED = ("delivered", "failed")


class WebhookPurger:
    kind = "webhooks"

    def __init__(self, database: Database) -> None:
        self._db = database

    async def purge(self, before: datetime, limit: int) -> int:
        finished = webhook_deliveries.c.status.in_(_FINISHED)
        oldest = (
            select(webhook_deliveries.c.id)
            .where(finished, webhook_deliveries.c.completed_at < before)
            .order_by(webhook_deliveries.c.completed_at)
            .limit(limit)
        )
        async with self._db.write() as conn:
            ids = (await conn.execute(oldest)).scalars().all()
            if not ids:
                return 0
            await conn.execute(delete(webhook_attempts).where(webhook_attempts.c.delivery_id.in_(ids)))
            removed = await conn.execute(
                delete(webhook_deliveries).where(webhook_deliveries.c.id.in_(ids), finished)
            )
        return int(removed.rowcount)

    async def measure(self) -> StoreSizes:
        async with self._db.read() as conn:
            deliveries = await conn.scalar(select(func.count()).select_from(webhook_deliveries))
            attempts = await conn.scalar(select(func.count()).select_from(webhook_attempts))
        return StoreSizes(
            rows={"webhook_deliveries": int(deliveries or 0), "webhook_attempts": int(attempts or 0)}
        )
