"""Migration 0019: reservations are indexed only while held; the sweep still finds every held one."""

from __future__ import annotations

import sqlite3

from alembic import command
from sqlalchemy import select, text

from batchin.core.billing.ledger import LedgerService
from batchin.core.billing.money import UNITS_PER_CENT
from batchin.services import Services
from batchin.store.group_commit import sqlite_file
from batchin.store.migrate import alembic_config, upgrade
from batchin.store.tables import reservations
from tests.conftest import MakeUser
from tests.core.billing.test_ledger import balance_units, principal_for, usage


async def test_reservations_from_before_the_partial_index_are_swept(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=10)
    principal = await principal_for(services, user.id)
    async with services.database.write() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0018_receipts_by_user"))
    dead = LedgerService(services.database)  # a process that dies holding one reservation
    await dead.reserve(principal, 4 * UNITS_PER_CENT)
    settled = await dead.reserve(principal, 1 * UNITS_PER_CENT)
    await dead.settle(settled, usage(UNITS_PER_CENT))
    await dead.close()
    await upgrade(services.database)
    assert await services.ledger.sweep_stale(older_than_seconds=-1) == 1
    assert await balance_units(services, user.id) == 9 * UNITS_PER_CENT
    async with services.database.read() as conn:
        statuses = sorted((await conn.execute(select(reservations.c.status))).scalars().all())
    assert statuses == ["released", "settled"]


async def test_the_sweep_reads_only_the_held_reservations(services: Services) -> None:
    path = sqlite_file(services.database)
    if path is None:  # PostgreSQL plans by its statistics: the index itself holds only held rows
        async with services.database.read() as conn:
            definition = await conn.scalar(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_reservations_held'")
            )
        assert str(definition).endswith("(created_at) WHERE ((status)::text = 'held'::text)")
        return
    conn = sqlite3.connect(path)
    try:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM reservations WHERE status = 'held' "
            "AND coalesce(renewed_at, created_at) < ?",
            ("2026-01-01",),
        ).fetchall()
    finally:
        conn.close()
    assert [step[3] for step in plan] == ["SCAN reservations USING INDEX ix_reservations_held"]
