"""A batch past its `expires_at` (its completion window): its waiting tasks → expired.

The supervisor's pass already reads every unfinished batch with its expires_at, so it writes only
when one of them is due (`expiring`), rather than run the conditional UPDATE every pass; the UPDATE
then decides which are due, to the microsecond. Running tasks finish; finalizing ends the batch
`expired` (lifecycle.py).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import update

from batchin.core.batches.store import TaskStore
from batchin.core.batches.view import epoch
from batchin.core.batches.worker import TaskDispatcher
from batchin.core.clock import utcnow
from batchin.store.database import Database
from batchin.store.tables import batches

__all__ = ["EXPIRABLE", "expire_due", "expiring"]

log = logging.getLogger("batchin.batches")

EXPIRABLE = ("validating", "pending", "in_progress")


def expiring(row: Any) -> bool:
    """A batch row (status, expires_at, expired_at) past its expires_at and not yet marked."""
    due = epoch(row.expires_at)
    return row.status in EXPIRABLE and row.expired_at is None and due is not None and due <= time.time()


async def expire_due(database: Database, store: TaskStore, dispatcher: TaskDispatcher) -> None:
    now = utcnow()
    async with database.write() as conn:
        due = (
            await conn.execute(
                update(batches)
                .where(
                    batches.c.status.in_(EXPIRABLE),
                    batches.c.expired_at.is_(None),
                    batches.c.expires_at < now,
                )
                .values(expired_at=now)
                .returning(batches.c.id)
            )
        ).all()
    for (batch_id,) in due:
        dispatcher.forget(batch_id)
        expired = await store.settle_waiting(batch_id, "expired")
        log.info("batch %s expired with %d tasks not run", batch_id, expired)
