"""Retention: the purge job that deletes what has outlived its kind's retention, and the store
sizes /metrics reports (docs/reference/retention.mdx).

Each domain that owns purgeable data supplies a `Purger` (media: files and videos; traces;
prompts: run samples; webhooks: finished deliveries and their attempts) and the composition root
hands them to one `RetentionJob` with their retention periods. A domain whose data is never purged
may still report its size (`Measured`: the audit log, which is append-only).

The job is a durable worker over one row of `maintenance_jobs`: every server process polls it, and
only the process that claims the row while it is due runs the purge (under a lease renewed while
it runs, handed back by a clean stop, taken over by another process once a crash lets it lapse).
A run deletes in batches of `batch_rows`, one transaction each, oldest first, until a batch comes
back short; then it measures every store, writes the figures to the row and sets the next run.
Every process reads the figures back from the row on each poll, so each one's /metrics shows the
same sizes without counting anything itself. Two runs that overlap (a lease that lapsed under a
very long run) stay correct: each batch deletes only rows still present and skips files already
gone.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import or_, select, update

from batchin.core.clock import utcnow
from batchin.core.worker import DurableWorker, new_worker_id
from batchin.store.database import Database
from batchin.store.tables import maintenance_jobs
from batchin.store.upsert import upsert_insert

__all__ = ["Measured", "Purger", "RetentionJob", "RetentionRule", "RetentionStats", "StoreSizes"]

log = logging.getLogger("batchin.retention")

JOB_NAME = "retention"
_LEASE_SECONDS = 300.0
_MAX_POLL_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class StoreSizes:
    """Row counts per table, and stored files (count and bytes) per purpose."""

    rows: dict[str, int] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    file_bytes: dict[str, int] = field(default_factory=dict)

    def merged(self, other: StoreSizes) -> StoreSizes:
        return StoreSizes(
            {**self.rows, **other.rows},
            {**self.files, **other.files},
            {**self.file_bytes, **other.file_bytes},
        )


@dataclass(frozen=True, slots=True)
class RetentionStats:
    """What the last run found: the sizes after it, rows purged per kind, when it finished."""

    sizes: StoreSizes
    purged: dict[str, int]
    finished_at: float  # unix seconds

    def to_json(self) -> str:
        sizes = {"rows": self.sizes.rows, "files": self.sizes.files, "file_bytes": self.sizes.file_bytes}
        return json.dumps({"sizes": sizes, "purged": self.purged, "finished_at": self.finished_at})

    @classmethod
    def from_json(cls, text: str) -> RetentionStats:
        data = json.loads(text)
        return cls(StoreSizes(**data["sizes"]), data["purged"], data["finished_at"])


class Measured(Protocol):
    async def measure(self) -> StoreSizes:
        """The sizes of this domain's stores (cheap enough to run once per purge)."""


class Purger(Measured, Protocol):
    kind: str  # the retention it enforces: files, videos, traces, prompt_samples, webhooks

    async def purge(self, before: datetime, limit: int) -> int:
        """Delete up to `limit` of the oldest items older than `before` in one transaction (their
        bytes on disk too); returns how many this call removed."""


@dataclass(frozen=True, slots=True)
class RetentionRule:
    purger: Purger
    days: float  # 0: kept for ever (still measured)


class RetentionJob(DurableWorker[str]):
    def __init__(
        self,
        database: Database,
        rules: Sequence[RetentionRule],
        measured: Sequence[Measured] = (),
        *,
        interval_seconds: float,
        batch_rows: int,
    ) -> None:
        super().__init__(
            name="retention-purge",
            log=log,
            worker_id=new_worker_id(),
            poll_seconds=min(interval_seconds, _MAX_POLL_SECONDS),
            renew_seconds=_LEASE_SECONDS / 5,
        )
        self._db = database
        self._rules = tuple(rules)
        self._measured = tuple(measured)
        self._interval = interval_seconds
        self._batch_rows = batch_rows
        self._stats: RetentionStats | None = None

    def stats(self) -> RetentionStats | None:
        """The figures of the last run by any process, as last read (None before any)."""
        return self._stats

    async def run_now(self) -> RetentionStats | None:
        """Run the purge here and now, due or not, unless another process holds the job (None)."""
        if not await self._claim(due_only=False):
            return None
        return await self._run()

    async def stop(self) -> None:
        was_running = self.running
        await super().stop()
        if not was_running:
            return
        # A clean stop hands an interrupted run back: it is still due, for any process.
        async with self._db.write() as conn:
            await conn.execute(
                update(maintenance_jobs)
                .where(maintenance_jobs.c.name == JOB_NAME, maintenance_jobs.c.claimed_by == self.worker_id)
                .values(claimed_by=None, lease_until=None)
            )

    # -- the loop (DurableWorker): at most one run, in at most one process --------------------

    async def _claim_items(self, limit: int) -> list[str]:
        return [JOB_NAME] if await self._claim(due_only=True) else []

    async def _process(self, item: str) -> None:
        await self._run()

    async def _renew_leases(self) -> None:
        async with self._db.write() as conn:
            await conn.execute(
                update(maintenance_jobs)
                .where(maintenance_jobs.c.name == JOB_NAME, maintenance_jobs.c.claimed_by == self.worker_id)
                .values(lease_until=utcnow() + timedelta(seconds=_LEASE_SECONDS))
            )

    async def _claim(self, *, due_only: bool) -> bool:
        """Read the shared figures, then take the job if it is free (and due, with `due_only`)."""
        now = utcnow()
        async with self._db.read() as conn:
            row = (
                await conn.execute(select(maintenance_jobs).where(maintenance_jobs.c.name == JOB_NAME))
            ).first()
        if row is not None and row.stats:
            self._stats = RetentionStats.from_json(row.stats)
        if row is not None and not _free(row, now, due_only=due_only):
            return False  # the common poll: nothing to write
        free = or_(maintenance_jobs.c.lease_until.is_(None), maintenance_jobs.c.lease_until < now)
        claim = (
            update(maintenance_jobs)
            .where(maintenance_jobs.c.name == JOB_NAME, free)
            .values(claimed_by=self.worker_id, lease_until=now + timedelta(seconds=_LEASE_SECONDS))
        )
        if due_only:
            claim = claim.where(maintenance_jobs.c.next_run_at <= now)
        async with self._db.write() as conn:
            if row is None:  # the first process ever: the job is due at once
                first = upsert_insert(self._db.dialect)(maintenance_jobs).values(
                    name=JOB_NAME, next_run_at=now
                )
                await conn.execute(first.on_conflict_do_nothing())
            return bool((await conn.execute(claim)).rowcount == 1)

    # -- one run -----------------------------------------------------------------------------

    async def _run(self) -> RetentionStats:
        started = utcnow()
        purged: dict[str, int] = {}
        for rule in self._rules:
            if rule.days > 0:
                purged[rule.purger.kind] = await self._purge(rule, started - timedelta(days=rule.days))
        sizes = await self._measure()
        stats = RetentionStats(sizes, purged, time.time())
        async with self._db.write() as conn:
            await conn.execute(
                update(maintenance_jobs)
                .where(maintenance_jobs.c.name == JOB_NAME, maintenance_jobs.c.claimed_by == self.worker_id)
                .values(
                    claimed_by=None,
                    lease_until=None,
                    next_run_at=utcnow() + timedelta(seconds=self._interval),
                    last_finished_at=utcnow(),
                    stats=stats.to_json(),
                )
            )
        self._stats = stats
        return stats

    async def _purge(self, rule: RetentionRule, before: datetime) -> int:
        """Batches until one comes back short. A failing kind is logged and left for the next run;
        the others still run."""
        total = 0
        try:
            while True:
                removed = await rule.purger.purge(before, self._batch_rows)
                total += removed
                if removed < self._batch_rows:
                    break
        except Exception:
            log.exception(
                "purging expired %s failed after %d; the next run tries again", rule.purger.kind, total
            )
        if total:
            log.info("purged %d %s older than %g days", total, rule.purger.kind, rule.days)
        return total

    async def _measure(self) -> StoreSizes:
        sizes = StoreSizes()
        for source in (*(rule.purger for rule in self._rules), *self._measured):
            try:
                sizes = sizes.merged(await source.measure())
            except Exception:
                log.exception("measuring a store failed")
        return sizes


def _free(row: Any, now: datetime, *, due_only: bool) -> bool:
    lease_until = _aware(row.lease_until)
    if lease_until is not None and lease_until >= now:
        return False
    return not due_only or _aware(row.next_run_at) <= now  # type: ignore[operator]


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes that are UTC.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
