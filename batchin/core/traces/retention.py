"""What the retention purge (core/retention.py) removes of traces: each trace first seen more than
BATCHIN_TRACE_RETENTION_DAYS ago, its summary and every span of it (packed or not), in one
transaction. A trace ages from when it was first reported (its summary's `created_at`, this
server's clock), not from its spans' own timestamps, which an OTLP sender chooses."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, tuple_

from batchin.core.retention import StoreSizes
from batchin.store.database import Database
from batchin.store.tables import trace_call_spans, trace_spans, trace_summaries

__all__ = ["TracePurger"]


class TracePurger:
    kind = "traces"

    def __init__(self, database: Database) -> None:
        self._db = database

    async def purge(self, before: datetime, limit: int) -> int:
        oldest = (
            select(trace_summaries.c.user_id, trace_summaries.c.trace_id)
            .where(trace_summaries.c.created_at < before)
            .order_by(trace_summaries.c.created_at)
            .limit(limit)
        )
        async with self._db.write() as conn:
            keys = [tuple(row) for row in (await conn.execute(oldest)).all()]
            if not keys:
                return 0
            for spans in (trace_call_spans, trace_spans):
                await conn.execute(delete(spans).where(tuple_(spans.c.user_id, spans.c.trace_id).in_(keys)))
            summary_of = tuple_(trace_summaries.c.user_id, trace_summaries.c.trace_id).in_(keys)
            removed = await conn.execute(delete(trace_summaries).where(summary_of))
        return int(removed.rowcount)

    async def measure(self) -> StoreSizes:
        async with self._db.read() as conn:
            summaries = await conn.scalar(select(func.count()).select_from(trace_summaries))
            rows = await conn.scalar(select(func.count()).select_from(trace_spans))
            packed = await conn.scalar(select(func.sum(trace_call_spans.c.span_count)))
        # "trace_spans" counts spans in either form (a row each, or packed a call to a row); the
        # packs' counts are summed from their (user, last start, count) index, not their rows.
        spans = int(rows or 0) + int(packed or 0)
        return StoreSizes(rows={"trace_summaries": int(summaries or 0), "trace_spans": spans})
