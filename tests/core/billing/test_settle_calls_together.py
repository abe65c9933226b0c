"""Calls' settlements asked for together (LedgerService.settle on SQLite: a block of them is one
writer operation, LedgerWrites.settle_block): each keeps its own outcome and the balance, the key's
spend, the usage logs and the rollups come out as if each had been written alone. On PostgreSQL
each is its own transaction, and the same assertions hold."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from sqlalchemy import select

from batchin.core.billing.ledger import LedgerService
from batchin.core.billing.money import UNITS_PER_CENT
from batchin.core.clock import month_of, utcnow
from batchin.services import Services
from batchin.store.tables import key_spend, reservations, usage_rollups
from tests.conftest import MakeUser
from tests.core.billing.test_ledger import balance_units, principal_for, usage

HELD = 2 * UNITS_PER_CENT
COST = UNITS_PER_CENT // 2


async def _spent(services: Services, key_id: str | None) -> int:
    async with services.database.read() as conn:
        query = select(key_spend.c.spent_units).where(
            key_spend.c.key_id == key_id, key_spend.c.month == month_of(utcnow())
        )
        return int((await conn.execute(query)).scalar_one())


async def _statuses(services: Services, ids: list[str]) -> list[str]:
    async with services.database.read() as conn:
        rows = dict((await conn.execute(select(reservations.c.id, reservations.c.status))).all())
    return [rows[reservation_id] for reservation_id in ids]


async def test_settlements_asked_together_each_charge_once(services: Services, make_user: MakeUser) -> None:
    user = await make_user(credit_cents=100)
    principal = await principal_for(services, user.id)
    held = [await services.ledger.reserve(principal, HELD) for _ in range(12)]
    assert await services.ledger.release(held[5])  # closed before: its settlement charges nothing

    # More than one block's worth, one reservation asked twice in the same turn.
    outcomes = await asyncio.gather(
        *(services.ledger.settle(r, usage(COST, f"req_{n}")) for n, r in enumerate(held)),
        services.ledger.settle(held[0], usage(COST, "req_again")),
    )

    assert outcomes == [COST] * 5 + [0] + [COST] * 6 + [0]
    assert await balance_units(services, user.id) == 100 * UNITS_PER_CENT - 11 * COST
    assert await _spent(services, principal.key_id) == 11 * COST
    assert await _statuses(services, [r.id for r in held]) == ["settled"] * 5 + ["released"] + ["settled"] * 6
    logs = await services.usage.list_logs(user.id)
    assert sorted(log.request_id for log in logs) == sorted(f"req_{n}" for n in range(12) if n != 5)
    async with services.database.read() as conn:
        rollup = (await conn.execute(select(usage_rollups).where(usage_rollups.c.user_id == user.id))).one()
    assert (rollup.requests, rollup.input_tokens, rollup.output_tokens, rollup.cost_units) == (
        11,
        11 * 3,
        11 * 4,
        11 * COST,
    )
    assert services.ledger.live_reservations == 0


async def test_a_store_error_in_one_settlement_fails_only_that_one(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=100)
    principal = await principal_for(services, user.id)
    held = [await services.ledger.reserve(principal, HELD) for _ in range(3)]
    broken = replace(usage(COST, "req_1"), model=None)  # type: ignore[arg-type]  # NOT NULL: refused

    outcomes = await asyncio.gather(
        services.ledger.settle(held[0], usage(COST, "req_0")),
        services.ledger.settle(held[1], broken),
        services.ledger.settle(held[2], usage(COST, "req_2")),
        return_exceptions=True,
    )

    assert outcomes[0] == outcomes[2] == COST
    assert isinstance(outcomes[1], Exception)
    assert await _statuses(services, [r.id for r in held]) == ["settled", "held", "settled"]
    assert await balance_units(services, user.id) == 100 * UNITS_PER_CENT - 2 * COST - HELD
    assert await _spent(services, principal.key_id) == 2 * COST + HELD
    assert sorted(log.request_id for log in await services.usage.list_logs(user.id)) == ["req_0", "req_2"]


async def test_a_cancelled_caller_is_still_settled(services: Services, make_user: MakeUser) -> None:
    user = await make_user(credit_cents=100)
    principal = await principal_for(services, user.id)
    ledger: LedgerService = services.ledger
    held = await ledger.reserve(principal, HELD)

    settling = asyncio.ensure_future(ledger.settle(held, usage(COST)))
    await asyncio.sleep(0)  # queued on the writer (or its transaction begun), then the caller goes
    settling.cancel()
    await asyncio.gather(settling, return_exceptions=True)

    for _ in range(200):  # the write runs to its end without its caller
        if (await _statuses(services, [held.id])) == ["settled"]:
            break
        await asyncio.sleep(0.01)
    assert await _statuses(services, [held.id]) == ["settled"]
    assert await balance_units(services, user.id) == 100 * UNITS_PER_CENT - COST
    assert ledger.live_reservations == 0
