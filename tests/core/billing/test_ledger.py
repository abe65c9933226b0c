"""The reservation ledger: atomic under concurrency, exact, settled once."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from batchin.core.billing.ledger import LedgerService
from batchin.core.billing.ledger_records import UsageRecord
from batchin.core.billing.money import UNITS_PER_CENT
from batchin.core.context import Principal
from batchin.errors import PaymentRequired
from batchin.protocol.accounts import KeyCreateRequest
from batchin.services import Services
from batchin.store.tables import reservations, users
from tests.conftest import MakeUser


async def principal_for(services: Services, user_id: str, budget_cents: int | None = None) -> Principal:
    key = await services.accounts.create_key(user_id, KeyCreateRequest(monthly_budget_cents=budget_cents))
    return Principal(user_id, key.id, key.key_prefix, key.rate_limit_rpm, budget_cents)


async def balance_units(services: Services, user_id: str) -> int:
    async with services.database.read() as conn:
        return int(
            (await conn.execute(select(users.c.balance_units).where(users.c.id == user_id))).scalar_one()
        )


def usage(cost: int, request_id: str = "req_test") -> UsageRecord:
    return UsageRecord(
        request_id=request_id,
        model="m",
        endpoint="test",
        cost_units=cost,
        latency_ms=1,
        input_tokens=3,
        output_tokens=4,
    )


async def test_200_concurrent_reservations_on_a_balance_for_100(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=100)
    principal = await principal_for(services, user.id)

    async def attempt() -> bool:
        try:
            await services.ledger.reserve(principal, UNITS_PER_CENT)
        except PaymentRequired:
            return False
        return True

    outcomes = await asyncio.gather(*(attempt() for _ in range(200)))
    assert outcomes.count(True) == 100
    assert outcomes.count(False) == 100
    assert await balance_units(services, user.id) == 0


async def test_concurrent_reservations_respect_the_key_budget(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=1_000)
    principal = await principal_for(services, user.id, budget_cents=30)

    async def attempt() -> str:
        try:
            await services.ledger.reserve(principal, UNITS_PER_CENT)
        except PaymentRequired as exc:
            return exc.message
        return "ok"

    outcomes = await asyncio.gather(*(attempt() for _ in range(60)))
    assert outcomes.count("ok") == 30
    assert all("monthly budget" in o for o in outcomes if o != "ok")
    assert await balance_units(services, user.id) == (1_000 - 30) * UNITS_PER_CENT


async def test_settle_charges_actual_cost_and_returns_the_rest(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=10)
    principal = await principal_for(services, user.id)
    reservation = await services.ledger.reserve(principal, 5 * UNITS_PER_CENT)
    assert await balance_units(services, user.id) == 5 * UNITS_PER_CENT
    charged = await services.ledger.settle(reservation, usage(1_234_567))
    assert charged == 1_234_567
    assert await balance_units(services, user.id) == 10 * UNITS_PER_CENT - 1_234_567
    logs = await services.usage.list_logs(user.id)
    assert [(log.cost_micro_cents, log.input_tokens, log.output_tokens) for log in logs] == [
        (1_234_567, 3, 4)
    ]
    assert logs[0].cost_cents == pytest.approx(1.234567)


async def test_settle_is_exactly_once(services: Services, make_user: MakeUser) -> None:
    user = await make_user(credit_cents=10)
    principal = await principal_for(services, user.id)
    reservation = await services.ledger.reserve(principal, 2 * UNITS_PER_CENT)
    results = await asyncio.gather(
        *(services.ledger.settle(reservation, usage(UNITS_PER_CENT)) for _ in range(5))
    )
    assert sorted(results) == [0, 0, 0, 0, UNITS_PER_CENT]
    assert await balance_units(services, user.id) == 9 * UNITS_PER_CENT
    assert len(await services.usage.list_logs(user.id)) == 1
    assert await services.ledger.release(reservation) is False


async def test_cost_above_the_reservation_is_capped(services: Services, make_user: MakeUser) -> None:
    user = await make_user(credit_cents=10)
    principal = await principal_for(services, user.id)
    reservation = await services.ledger.reserve(principal, UNITS_PER_CENT)
    assert await services.ledger.settle(reservation, usage(50 * UNITS_PER_CENT)) == UNITS_PER_CENT
    assert await balance_units(services, user.id) == 9 * UNITS_PER_CENT


async def test_release_returns_everything_and_logs_nothing(services: Services, make_user: MakeUser) -> None:
    user = await make_user(credit_cents=10)
    principal = await principal_for(services, user.id, budget_cents=5)
    reservation = await services.ledger.reserve(principal, 5 * UNITS_PER_CENT)
    with pytest.raises(PaymentRequired, match="monthly budget"):
        await services.ledger.reserve(principal, 1)
    assert await services.ledger.release(reservation) is True
    assert await balance_units(services, user.id) == 10 * UNITS_PER_CENT
    assert await services.usage.list_logs(user.id) == []
    # the key's budget is free again
    again = await services.ledger.reserve(principal, 5 * UNITS_PER_CENT)
    assert again.amount_units == 5 * UNITS_PER_CENT


async def test_balance_refusal_names_the_balance(services: Services, make_user: MakeUser) -> None:
    user = await make_user(credit_cents=1)
    principal = await principal_for(services, user.id)
    with pytest.raises(PaymentRequired, match="credit balance"):
        await services.ledger.reserve(principal, 2 * UNITS_PER_CENT)
    assert await balance_units(services, user.id) == UNITS_PER_CENT


async def test_sweep_releases_reservations_of_dead_calls(services: Services, make_user: MakeUser) -> None:
    user = await make_user(credit_cents=10)
    principal = await principal_for(services, user.id)
    dead = LedgerService(services.database)  # another process, which dies holding a reservation
    await dead.reserve(principal, 4 * UNITS_PER_CENT)
    await dead.close()
    assert await services.ledger.sweep_stale(older_than_seconds=3600) == 0
    assert await services.ledger.sweep_stale(older_than_seconds=-1) == 1
    assert await balance_units(services, user.id) == 10 * UNITS_PER_CENT
    async with services.database.read() as conn:
        statuses = (await conn.execute(select(reservations.c.status))).scalars().all()
    assert statuses == ["released"]


async def test_balance_change_equals_sum_of_usage_logs(services: Services, make_user: MakeUser) -> None:
    user = await make_user(credit_cents=10_000)
    principal = await principal_for(services, user.id)
    costs = [1, 999_999, 1_000_001, 7, 0, 123_456_789]

    async def call(cost: int) -> None:
        reservation = await services.ledger.reserve(principal, 2 * 10**8)
        await services.ledger.settle(reservation, usage(cost))

    await asyncio.gather(*(call(c) for c in costs))
    logs = await services.usage.list_logs(user.id, limit=500)
    summary = await services.usage.summary(user.id)
    spent = 10_000 * UNITS_PER_CENT - await balance_units(services, user.id)
    assert spent == sum(costs) == sum(log.cost_micro_cents for log in logs) == summary.total_cost_micro_cents
    assert summary.total_requests == len(costs)
    assert summary.total_input_tokens == 3 * len(costs)
