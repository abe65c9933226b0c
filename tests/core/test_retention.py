"""The retention job (batchin/core/retention.py) on the real store, SQLite and PostgreSQL: a started
job runs at once and then waits for its interval; one process at a time runs it (a lease another
holds is respected until it lapses); a stop during a run hands the job back, still due; every
process reports the figures of the last run; one failing kind leaves the others running. The
purgers here are stand-ins that count their calls: what the real ones delete is
test_retention_purge.py's subject."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from batchin.core.clock import utcnow
from batchin.core.retention import RetentionJob, RetentionRule, StoreSizes
from batchin.services import Services
from batchin.store.tables import maintenance_jobs
from tests.text_fixtures import eventually

SETTLE = 10.0


class CountingPurger:
    """Removes `backlog` items, `limit` per call, oldest first; optionally waits or fails."""

    def __init__(self, kind: str, backlog: int = 0) -> None:
        self.kind = kind
        self.backlog = backlog
        self.calls: list[datetime] = []
        self.entered = asyncio.Event()
        self.gate: asyncio.Event | None = None  # when set, each call waits for it
        self.fails = False

    async def purge(self, before: datetime, limit: int) -> int:
        self.calls.append(before)
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fails:
            raise RuntimeError("the store refused")
        removed = min(limit, self.backlog)
        self.backlog -= removed
        return removed

    async def measure(self) -> StoreSizes:
        return StoreSizes(rows={self.kind: self.backlog})


def job(services: Services, *purgers: CountingPurger, interval: float = 3600.0) -> RetentionJob:
    rules = [RetentionRule(purger, days=30) for purger in purgers]
    return RetentionJob(services.database, rules, interval_seconds=interval, batch_rows=10)


async def job_row(services: Services) -> Any:
    async with services.database.read() as conn:
        return (await conn.execute(select(maintenance_jobs))).one()


def aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes that are UTC."""
    return None if moment is None else moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def test_a_started_job_runs_at_once_in_bounded_batches_then_waits_for_its_interval(
    services: Services,
) -> None:
    purger = CountingPurger("things", backlog=25)
    first = job(services, purger)
    await first.start()
    try:
        await eventually(lambda: first.stats() is not None, timeout=SETTLE)
    finally:
        await first.stop()

    stats = first.stats()
    assert stats is not None
    assert stats.purged == {"things": 25}
    assert len(purger.calls) == 3  # 10, 10, then 5: a short batch ends the kind
    cutoff = purger.calls[0]
    assert abs((utcnow() - timedelta(days=30) - cutoff).total_seconds()) < SETTLE
    row = await job_row(services)
    assert (row.claimed_by, row.lease_until) == (None, None)
    assert aware(row.next_run_at) > utcnow() + timedelta(seconds=3600 - SETTLE)  # type: ignore[operator]


async def test_another_process_reads_the_figures_and_does_not_run_before_the_next_run(
    services: Services,
) -> None:
    await job(services, CountingPurger("things", backlog=4)).run_now()
    idle = CountingPurger("things", backlog=99)
    other = job(services, idle)
    await other.start()
    try:
        await eventually(lambda: other.stats() is not None, timeout=SETTLE)
    finally:
        await other.stop()

    stats = other.stats()
    assert stats is not None
    assert (stats.purged, stats.sizes.rows) == ({"things": 4}, {"things": 0})
    assert idle.calls == []


async def test_a_lease_held_elsewhere_is_respected_until_it_lapses(services: Services) -> None:
    await job(services).run_now()  # makes the row
    async with services.database.write() as conn:
        await conn.execute(
            update(maintenance_jobs).values(
                claimed_by="elsewhere:1:abcd", lease_until=utcnow() + timedelta(seconds=300)
            )
        )
    purger = CountingPurger("things", backlog=3)
    here = job(services, purger)

    assert await here.run_now() is None
    assert purger.calls == []

    async with services.database.write() as conn:
        await conn.execute(update(maintenance_jobs).values(lease_until=utcnow() - timedelta(seconds=1)))
    stats = await here.run_now()  # the other process died: its lease lapsed

    assert stats is not None
    assert stats.purged == {"things": 3}
    assert (await job_row(services)).claimed_by is None


async def test_a_stop_during_a_run_hands_the_job_back_still_due(services: Services) -> None:
    purger = CountingPurger("things", backlog=3)
    purger.gate = asyncio.Event()  # never set: the run is stopped in the middle
    stopping = job(services, purger)
    await stopping.start()
    await asyncio.wait_for(purger.entered.wait(), SETTLE)

    await stopping.stop()
    await stopping.stop()  # again: nothing left to do

    row = await job_row(services)
    assert (row.claimed_by, row.lease_until, row.stats) == (None, None, None)
    assert aware(row.next_run_at) <= utcnow()  # type: ignore[operator]
    successor = CountingPurger("things", backlog=3)
    stats = await job(services, successor).run_now()
    assert stats is not None
    assert stats.purged == {"things": 3}


async def test_a_failing_kind_is_logged_and_the_others_still_run(services: Services) -> None:
    broken, fine = CountingPurger("broken", backlog=5), CountingPurger("fine", backlog=5)
    broken.fails = True

    stats = await job(services, broken, fine).run_now()

    assert stats is not None
    assert stats.purged == {"broken": 0, "fine": 5}
    assert stats.sizes.rows == {"broken": 5, "fine": 0}
    assert (await job_row(services)).claimed_by is None


async def test_stop_without_start_is_safe(services: Services) -> None:
    await job(services).stop()
