"""Money under cancellation: a call cancelled before it runs gives its reservation back at once; a
reservation whose holder lives (a long stream, a running batch task) survives the stale sweep, that
of a process that died does not; and the balance always falls by exactly the usage logs' costs."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from batchin.config import Settings
from batchin.core.billing.ledger import LedgerService
from batchin.core.billing.money import UNITS_PER_CENT
from batchin.core.clock import utcnow
from batchin.core.serving.text_producer import StartedText
from batchin.protocol.accounts import UserCreated
from batchin.protocol.text import ChatCompletionRequest
from batchin.services import Services
from batchin.store.tables import reservations, users
from tests.batch_fixtures import TASK_COST, batch_services, chat_task, new_email, submit, wait_for
from tests.conftest import MakeUser
from tests.core.billing.test_ledger import principal_for
from tests.text_fixtures import (
    balance_units,
    context_for,
    cost_units,
    eventually,
    logs_of,
    runner_of,
    scripted_services,
)

MODEL = "one-at-a-time"
CATALOG = f"""
[models.{MODEL}]
kind = ["chat"]
engine = "scripted"
licence = "MIT"
context_length = 64
status = "always_on"
max_concurrency = 1
queue_size = 8
engine_options = {{ tokens = {json.dumps(["Hello", ",", " world", "!"])} }}
pricing = {{ input_per_1m = 1.5, output_per_1m = 3 }}
"""
PROMPT = "say hello"  # two tokens; the reply is four
STALE = 3600.0  # the default stale period; time is moved by passing `now`, never waited for


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    # One buffered delta: a reader that leaves after one token leaves the engine mid-generation.
    async with scripted_services(settings, catalog=CATALOG, stream_buffer_chunks=1) as built:
        yield built


def chat() -> ChatCompletionRequest:
    return ChatCompletionRequest(model=MODEL, messages=[{"role": "user", "content": PROMPT}], stream=True)


async def start(services: Services, user: UserCreated) -> StartedText:
    return await services.inference.start_chat(await context_for(services, user), chat())


async def held_units(services: Services, user_id: str) -> list[int]:
    async with services.database.read() as conn:
        query = select(reservations.c.amount_units).where(
            reservations.c.user_id == user_id, reservations.c.status == "held"
        )
        return list((await conn.execute(query)).scalars().all())


async def statuses(services: Services, user_id: str) -> list[str]:
    async with services.database.read() as conn:
        query = select(reservations.c.status).where(reservations.c.user_id == user_id)
        return sorted((await conn.execute(query)).scalars().all())


@contextlib.asynccontextmanager
async def another_process(services: Services) -> AsyncIterator[LedgerService]:
    """A second ledger on the same store: another server process (or one that dies)."""
    ledger = LedgerService(services.database)
    try:
        yield ledger
    finally:
        await ledger.close()


@contextlib.asynccontextmanager
async def writes_held_up(services: Services, user_id: str) -> AsyncIterator[None]:
    """Another transaction holds what a reserve must write (SQLite: the store's write lock;
    PostgreSQL: the user's row) until the block ends."""
    async with services.database.write() as conn:
        if services.database.dialect == "postgresql":
            await conn.execute(select(users.c.id).where(users.c.id == user_id).with_for_update())
        yield


async def until_a_write_waits(services: Services) -> None:
    """Until a reserve's write is stuck behind `writes_held_up` (PostgreSQL shows it waiting on a
    lock; on SQLite it is queued on the group-commit writer as soon as the task has run once)."""
    if services.database.dialect != "postgresql":
        for _ in range(3):
            await asyncio.sleep(0)
        return
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        async with services.database.read() as conn:
            if (await conn.execute(waiting)).scalar_one() > 0:
                return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the reserve never reached the lock")
        await asyncio.sleep(0.01)


# -- cancelled before admission: released at once ------------------------------------------------


async def test_a_reserve_cancelled_while_its_write_waits_is_released_at_once(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=10)
    principal = await principal_for(services, user.id)
    async with writes_held_up(services, user.id):
        reserving = asyncio.create_task(services.ledger.reserve(principal, 4 * UNITS_PER_CENT))
        await until_a_write_waits(services)
        reserving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reserving

    assert await held_units(services, user.id) == []
    assert await balance_units(services, user) == 10 * UNITS_PER_CENT
    assert await logs_of(services, user) == []
    assert services.ledger.live_reservations == 0


async def test_a_call_cancelled_while_queued_for_its_model_releases_at_once(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=10)
    runner = await runner_of(services, MODEL)
    runner.gate = asyncio.Event()
    running = await start(services, user)
    queued = asyncio.create_task(start(services, user))
    await eventually(lambda: services.admission.snapshot()[f"shared/{MODEL}"]["queued"] == 1)
    [amount, same] = await held_units(services, user.id)  # both calls reserve the same
    assert amount == same

    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued

    assert await held_units(services, user.id) == [amount]  # the queued call's is back already
    assert await balance_units(services, user) == 10 * UNITS_PER_CENT - amount
    assert await statuses(services, user.id) == ["held", "released"]
    runner.gate.set()
    assert "".join([delta.text async for delta in running.generation]) == "Hello, world!"
    [log] = await logs_of(services, user)  # the cancelled call wrote no log and paid nothing
    assert (log.status, log.cost_micro_cents) == ("succeeded", cost_units(2, 4))
    assert await balance_units(services, user) == 10 * UNITS_PER_CENT - cost_units(2, 4)
    assert len(runner.calls) == 1


# -- live holders are not swept; dead ones are ---------------------------------------------------


async def test_a_live_stream_keeps_its_reservation_past_the_stale_period(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=10)
    runner = await runner_of(services, MODEL)
    runner.gate = asyncio.Event()
    began = utcnow()
    stream = await start(services, user)

    # This process renews its live calls within each stale period; another process sweeps after it.
    assert await services.ledger.renew_held(now=began + timedelta(seconds=0.9 * STALE)) == 1
    async with another_process(services) as other:
        assert await other.sweep_stale(STALE, now=began + timedelta(seconds=1.5 * STALE)) == 0
    assert await statuses(services, user.id) == ["held"]

    runner.gate.set()
    assert "".join([delta.text async for delta in stream.generation]) == "Hello, world!"
    [log] = await logs_of(services, user)
    assert (log.status, log.cost_micro_cents) == ("succeeded", cost_units(2, 4))
    assert await balance_units(services, user) == 10 * UNITS_PER_CENT - cost_units(2, 4)


async def test_the_sweeper_spares_its_own_live_calls_even_unrenewed(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=10)
    runner = await runner_of(services, MODEL)
    runner.gate = asyncio.Event()
    stream = await start(services, user)

    assert await services.ledger.sweep_stale(STALE, now=utcnow() + timedelta(seconds=2 * STALE)) == 0

    runner.gate.set()
    assert "".join([delta.text async for delta in stream.generation]) == "Hello, world!"
    [log] = await logs_of(services, user)
    assert (log.status, log.cost_micro_cents) == ("succeeded", cost_units(2, 4))


async def test_the_reservation_of_a_dead_process_is_still_swept(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=10)
    principal = await principal_for(services, user.id)
    began = utcnow()
    async with another_process(services) as doomed:
        await doomed.reserve(principal, 3 * UNITS_PER_CENT)  # its process dies holding it
    live = await services.ledger.reserve(principal, 2 * UNITS_PER_CENT)

    assert await services.ledger.renew_held(now=began + timedelta(seconds=0.9 * STALE)) == 1
    assert await services.ledger.sweep_stale(STALE, now=began + timedelta(seconds=0.5 * STALE)) == 0
    assert await services.ledger.sweep_stale(STALE, now=began + timedelta(seconds=1.5 * STALE)) == 1

    assert await held_units(services, user.id) == [2 * UNITS_PER_CENT]
    assert await balance_units(services, user) == 8 * UNITS_PER_CENT
    assert await services.ledger.release(live) is True
    assert await statuses(services, user.id) == ["released", "released"]
    assert await logs_of(services, user) == []


async def test_a_reservation_no_longer_renewed_is_swept_one_stale_period_after_its_last_renewal(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=10)
    principal = await principal_for(services, user.id)
    began = utcnow()
    async with another_process(services) as doomed:
        await doomed.reserve(principal, 3 * UNITS_PER_CENT)
        assert await doomed.renew_held(now=began + timedelta(seconds=STALE)) == 1
    # it died right after that renewal
    async with another_process(services) as other:
        assert await other.sweep_stale(STALE, now=began + timedelta(seconds=1.9 * STALE)) == 0
        assert await other.sweep_stale(STALE, now=began + timedelta(seconds=2.1 * STALE)) == 1
    assert await balance_units(services, user) == 10 * UNITS_PER_CENT


async def test_a_live_batch_task_keeps_its_reservation_past_the_stale_period(settings: Settings) -> None:
    async with batch_services(settings) as services:
        user = await services.accounts.create_user(new_email(), "Batch", 100)
        runner = await runner_of(services, "batch-chat")
        runner.gate = asyncio.Event()
        before = await balance_units(services, user)
        began = utcnow()
        batch = await submit(services, user, [chat_task("only")])
        await eventually(lambda: len(runner.calls) == 1)

        assert await services.ledger.renew_held(now=began + timedelta(seconds=0.9 * STALE)) == 1
        async with another_process(services) as other:
            assert await other.sweep_stale(STALE, now=began + timedelta(seconds=1.5 * STALE)) == 0
        runner.gate.set()
        done = await wait_for(services, user, batch.id)

        assert (done.status, done.completed_tasks) == ("completed", 1)
        [log] = await logs_of(services, user)
        assert log.cost_micro_cents == TASK_COST
        assert before - await balance_units(services, user) == TASK_COST
        assert await statuses(services, user.id) == ["settled"]


# -- the accounting invariant after cancellations ------------------------------------------------


async def test_after_cancellations_the_balance_falls_by_the_sum_of_the_logs(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=100)
    principal = await principal_for(services, user.id)
    runner = await runner_of(services, MODEL)
    runner.gate = asyncio.Event()
    cut_short = await start(services, user)  # runs first, its reader leaves after one token
    waiting: list[asyncio.Task[StartedText]] = [asyncio.create_task(start(services, user)) for _ in range(4)]
    await eventually(lambda: services.admission.snapshot()[f"shared/{MODEL}"]["queued"] == 4)
    waiting[1].cancel()
    waiting[3].cancel()
    async with writes_held_up(services, user.id):
        reserving = asyncio.create_task(services.ledger.reserve(principal, UNITS_PER_CENT))
        await until_a_write_waits(services)
        reserving.cancel()

    runner.gate.set()
    reader = aiter(cut_short.generation)
    assert (await anext(reader)).text == "Hello"
    await cut_short.generation.aclose()
    finished: list[Any] = []
    for task in (waiting[0], waiting[2]):
        started = await task
        finished.append("".join([delta.text async for delta in started.generation]))
    results = await asyncio.gather(waiting[1], waiting[3], reserving, return_exceptions=True)

    assert finished == ["Hello, world!", "Hello, world!"]
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    logs = await logs_of(services, user)
    assert sorted(log.status for log in logs) == ["cancelled", "succeeded", "succeeded"]
    [partial] = [log for log in logs if log.status == "cancelled"]
    assert 0 < partial.cost_micro_cents < cost_units(2, 4)
    spent = 100 * UNITS_PER_CENT - await balance_units(services, user)
    assert spent == sum(log.cost_micro_cents for log in logs)
    assert spent == (await services.usage.summary(user.id)).total_cost_micro_cents
    assert await held_units(services, user.id) == []
    assert services.ledger.live_reservations == 0
