"""Calls' reservations asked for together (LedgerService.reserve on SQLite: a block of them is one
writer operation, LedgerWrites.reserve_block): each is held or refused as if written alone, naming
the limit that refused it, and a refused one leaves neither the balance nor the key's spend moved.
On PostgreSQL each is its own transaction, and the same assertions hold."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from batchin.core.billing.ledger_records import Reservation
from batchin.core.billing.money import UNITS_PER_CENT
from batchin.core.clock import month_of, utcnow
from batchin.errors import PaymentRequired
from batchin.services import Services
from batchin.store.tables import key_spend, reservations
from tests.conftest import MakeUser
from tests.core.billing.test_ledger import balance_units, principal_for, usage


async def _spent(services: Services, key_id: str | None) -> int:
    async with services.database.read() as conn:
        query = select(key_spend.c.spent_units).where(
            key_spend.c.key_id == key_id, key_spend.c.month == month_of(utcnow())
        )
        return int((await conn.execute(query)).scalar_one_or_none() or 0)


async def _held(services: Services, user_id: str) -> int:
    async with services.database.read() as conn:
        query = select(func.count()).where(reservations.c.user_id == user_id, reservations.c.status == "held")
        return int((await conn.execute(query)).scalar_one())


async def _outcome(reserving: asyncio.Future[Reservation] | object) -> str:
    try:
        await reserving  # type: ignore[misc]
    except PaymentRequired as exc:
        return "budget" if "monthly budget" in exc.message else "balance"
    return "held"


async def test_reservations_asked_together_are_each_held_or_refused_alone(
    services: Services, make_user: MakeUser
) -> None:
    # A balance for 5 on a key with a budget for 3, and a second key without a budget.
    user = await make_user(credit_cents=5)
    budgeted = await principal_for(services, user.id, budget_cents=3)
    unbudgeted = await principal_for(services, user.id)

    # Each group asked in one turn (one block on SQLite; concurrent transactions on PostgreSQL).
    on_budget = await asyncio.gather(
        *(_outcome(services.ledger.reserve(budgeted, UNITS_PER_CENT)) for _ in range(4))
    )
    on_balance = await asyncio.gather(
        *(_outcome(services.ledger.reserve(unbudgeted, UNITS_PER_CENT)) for _ in range(4))
    )

    assert sorted(on_budget) == ["budget", "held", "held", "held"]
    assert sorted(on_balance) == ["balance", "balance", "held", "held"]
    assert await balance_units(services, user.id) == 0
    assert await _spent(services, budgeted.key_id) == 3 * UNITS_PER_CENT
    assert await _spent(services, unbudgeted.key_id) == 2 * UNITS_PER_CENT  # refused ones took theirs back
    assert await _held(services, user.id) == 5


async def test_a_store_error_in_one_reservation_fails_only_that_one(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=10)
    principal = await principal_for(services, user.id)
    taken = await services.ledger.reserve(principal, UNITS_PER_CENT)
    assert await services.ledger.settle(taken, usage(UNITS_PER_CENT)) == UNITS_PER_CENT

    outcomes = await asyncio.gather(
        services.ledger.reserve(principal, UNITS_PER_CENT),
        services.ledger.reserve(principal, UNITS_PER_CENT, reservation_id=taken.id),  # id taken
        services.ledger.reserve(principal, UNITS_PER_CENT),
        return_exceptions=True,
    )

    assert isinstance(outcomes[0], Reservation)
    assert isinstance(outcomes[2], Reservation)
    assert isinstance(outcomes[1], Exception)
    assert not isinstance(outcomes[1], PaymentRequired)
    assert await balance_units(services, user.id) == 7 * UNITS_PER_CENT
    assert await _spent(services, principal.key_id) == 3 * UNITS_PER_CENT
    assert await _held(services, user.id) == 2
