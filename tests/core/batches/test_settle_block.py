"""Batch tasks' settlements written together (LedgerService.settle_guarded on SQLite: one writer
operation per turn of the event loop, LedgerWrites.settle_block): each keeps its own outcome, as
if written alone. On PostgreSQL each is its own transaction, and the same assertions hold."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text, update

from batchin.core.batches.tasks import ClaimedTask
from batchin.core.billing.ledger_records import Reservation, SettlementRefused, UsageRecord
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from batchin.store.statements import Statement
from batchin.store.tables import batch_tasks, reservations, usage_rollups
from tests.batch_fixtures import CHAT, chat_task, submit, task_rows, usage_of
from tests.text_fixtures import balance_units

WORKER = "worker-a:1:aaaa"
HELD = 5000
COST = 750


START_WORKERS = False  # the tests drive the dispatcher themselves (conftest.py)


async def _claimed(
    services: Services, user: UserCreated, count: int
) -> tuple[list[ClaimedTask], list[Reservation]]:
    await submit(services, user, [chat_task(f"t{i}") for i in range(count)])
    tasks = await services.batches._store.claim(WORKER, count, lease_seconds=60, max_priority=3)
    principal = await services.auth.authenticate(user.api_key)
    held = [await services.ledger.reserve(principal, HELD, reservation_id=t.reservation_id) for t in tasks]
    return tasks, held


def _settle(services: Services, task: ClaimedTask, reservation: Reservation, guard: Any = None) -> Any:
    usage = UsageRecord(task.request_id, CHAT, "chat.completions", cost_units=COST, latency_ms=1)
    guard = guard or services.batches._store.complete_guard(
        task, WORKER, status_code=200, response="{}", cost_units=COST
    )
    return services.ledger.settle_guarded(reservation, usage, guard)


async def _status(services: Services, reservation: Reservation) -> str:
    async with services.database.read() as conn:
        query = select(reservations.c.status).where(reservations.c.id == reservation.id)
        return str((await conn.execute(query)).scalar_one())


async def test_settlements_asked_together_each_get_their_own_outcome(
    services: Services, user: UserCreated
) -> None:
    tasks, held = await _claimed(services, user, 4)
    async with services.database.write() as conn:  # another worker took task 2 over
        await conn.execute(
            update(batch_tasks).where(batch_tasks.c.id == tasks[2].id).values(claimed_by="worker-b:1:bbbb")
        )
    assert await services.ledger.release(held[3])  # task 3's attempt was released (a takeover)
    before = await balance_units(services, user)

    outcomes = await asyncio.gather(
        *(_settle(services, task, reservation) for task, reservation in zip(tasks, held, strict=True)),
        return_exceptions=True,
    )

    assert outcomes[:2] == [COST, COST]
    assert isinstance(outcomes[2], SettlementRefused)
    assert outcomes[3] is None  # already closed: nothing written
    # Two charged (each returns what it held beyond its cost); the refused one is still held.
    assert await balance_units(services, user) == before + 2 * (HELD - COST)
    assert [await _status(services, r) for r in held] == ["settled", "settled", "held", "released"]
    logs = await usage_of(services, user)
    assert sorted(log.request_id for log in logs) == sorted(t.request_id for t in tasks[:2])
    rows = {row.id: row for row in await task_rows(services, tasks[0].batch_id)}
    assert [rows[t.id].status for t in tasks] == ["completed", "completed", "running", "running"]
    assert [rows[t.id].cost_units for t in tasks[:2]] == [COST, COST]
    async with services.database.read() as conn:
        rollup = (await conn.execute(select(usage_rollups).where(usage_rollups.c.user_id == user.id))).one()
    assert (rollup.requests, rollup.cost_units) == (2, 2 * COST)

    # Settling again (a retry of the same attempt) charges nothing more.
    again = await asyncio.gather(*(_settle(services, t, r) for t, r in zip(tasks[:2], held[:2], strict=True)))
    assert again == [None, None]
    assert await balance_units(services, user) == before + 2 * (HELD - COST)


_BROKEN = Statement(text("UPDATE no_such_table SET x = 1"))


@dataclass(frozen=True)
class _BrokenGuard:
    """A guard whose write fails in the store (not a refusal): the error of its own settlement."""

    statement: Statement = _BROKEN
    params: Mapping[str, Any] = field(default_factory=dict)


async def test_a_store_error_in_one_settlement_fails_only_that_one(
    services: Services, user: UserCreated
) -> None:
    tasks, held = await _claimed(services, user, 3)
    before = await balance_units(services, user)

    outcomes = await asyncio.gather(
        _settle(services, tasks[0], held[0]),
        _settle(services, tasks[1], held[1], guard=_BrokenGuard()),
        _settle(services, tasks[2], held[2]),
        return_exceptions=True,
    )

    assert outcomes[0] == outcomes[2] == COST
    assert isinstance(outcomes[1], Exception)
    assert not isinstance(outcomes[1], SettlementRefused)
    assert await balance_units(services, user) == before + 2 * (HELD - COST)
    assert [await _status(services, r) for r in held] == ["settled", "held", "settled"]
    assert sorted(log.request_id for log in await usage_of(services, user)) == sorted(
        [tasks[0].request_id, tasks[2].request_id]
    )
