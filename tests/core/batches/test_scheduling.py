"""Scheduling and durability: priorities, fill against interactive calls, cancel, expiry, two
workers on one store, and workers that die mid-task (their tasks run again, billed once)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, update

from batchin.config import Settings
from batchin.core.batches.tasks import reservation_id
from batchin.core.billing.ledger_records import SettlementRefused, UsageRecord
from batchin.core.serving.admission import AdmissionPool, Priority, was_preempted
from batchin.errors import Preempted, RateLimited
from batchin.models.base import PreparedPrompt, TextDelta
from batchin.protocol.accounts import UserCreated
from batchin.protocol.text import ChatCompletionRequest
from batchin.services import Services
from batchin.store.tables import batch_tasks, batches, reservations
from tests.batch_fixtures import (
    BATCH_CATALOG,
    CHAT,
    TASK_COST,
    WIDE,
    batch_services,
    chat_task,
    submit,
    task_rows,
    usage_of,
    wait_for,
)
from tests.text_fixtures import balance_units, context_for, eventually, runner_of, scripted_services

DEAD_WORKER = "some-other-host:1:deadbeef"


START_WORKERS = False  # the tests drive the dispatcher themselves (conftest.py)


async def test_high_priority_tasks_run_before_low_ones(services: Services, user: UserCreated) -> None:
    low = await submit(services, user, [chat_task(f"low-{i}", content="low low low") for i in range(3)])
    high = await submit(
        services, user, [chat_task(f"high-{i}", content="high") for i in range(3)], priority="high"
    )
    await services.batches.start()

    await wait_for(services, user, low.id)
    await wait_for(services, user, high.id)

    prompts = [call.prompt_tokens for call in (await runner_of(services, CHAT)).calls]
    assert prompts == [1, 1, 1, 3, 3, 3]


async def test_a_high_batch_overtakes_low_tasks_already_waiting_for_the_model(
    services: Services, user: UserCreated
) -> None:
    runner = await runner_of(services, CHAT)
    runner.gate = asyncio.Event()
    low = await submit(services, user, [chat_task(f"low-{i}", content="low low low") for i in range(4)])
    await services.batches.start()
    await eventually(lambda: len(runner.calls) == 1)  # the model is busy; the other low tasks wait
    high = await submit(services, user, [chat_task("high", content="high")], priority="high")
    await eventually(lambda: services.batches.dispatcher.in_flight == 5)
    runner.gate.set()

    await wait_for(services, user, low.id)
    await wait_for(services, user, high.id)

    assert [call.prompt_tokens for call in runner.calls] == [3, 1, 3, 3, 3]


async def test_a_fill_task_gives_the_model_to_an_interactive_call_at_once_and_runs_again_billed_once(
    services: Services, user: UserCreated
) -> None:
    runner = await runner_of(services, CHAT)
    runner.gate = asyncio.Event()
    before = await balance_units(services, user)
    batch = await submit(
        services, user, [chat_task(f"fill-{i}", content="fill") for i in range(2)], priority="fill"
    )
    await services.batches.start()
    await eventually(lambda: len(runner.calls) == 1)  # the first fill task holds the only slot
    request = ChatCompletionRequest.model_validate(
        {"model": CHAT, "messages": [{"role": "user", "content": "an interactive call"}]}
    )
    started = asyncio.ensure_future(services.inference.start_chat(await context_for(services, user), request))

    # The interactive call does not wait for the fill generation: it takes its slot mid-way.
    await eventually(lambda: len(runner.calls) == 2)
    assert [(call.prompt_tokens, call.outcome) for call in runner.calls] == [(1, "cancelled"), (3, None)]
    runner.gate.set()
    interactive = await started
    await interactive.generation.wait()
    done = await wait_for(services, user, batch.id)

    assert (done.status, done.completed_tasks) == ("completed", 2)
    assert [call.prompt_tokens for call in runner.calls] == [1, 3, 1, 1]
    rows = await task_rows(services, batch.id)
    assert [row.failures for row in rows] == [0, 0]  # giving way is not a failure
    logs = await usage_of(services, user)
    # One log per task (the preempted attempt released, not charged) and one for the interactive call.
    assert sorted(log.status for log in logs) == ["succeeded"] * 3
    assert len({log.request_id for log in logs}) == 3
    charged = sum(row.cost_units for row in rows) + interactive.cost_units
    assert before - await balance_units(services, user) == charged == sum(log.cost_units for log in logs)


async def test_a_fill_task_preempted_at_a_shared_engine_runs_again_uncharged_without_a_retry(
    services: Services, user: UserCreated
) -> None:
    """Under `serve --workers N` the preemption happens at the engine's relay, in another process:
    the call gets Preempted back (tests/models/test_hosted_text.py checks the relay's side). The
    engine here answers so once; the task then runs as when its own process takes its slot."""
    runner = await runner_of(services, CHAT)
    scripted = runner.generate
    seen: list[tuple[int, bool]] = []

    async def preempted_once(prepared: PreparedPrompt) -> AsyncIterator[TextDelta]:
        seen.append((prepared.priority, prepared.preemptible))
        async for delta in scripted(prepared):
            yield delta
            if len(seen) == 1:
                raise Preempted()

    runner.generate = preempted_once  # type: ignore[method-assign]
    before = await balance_units(services, user)
    batch = await submit(services, user, [chat_task("fill-0", content="fill")], priority="fill")
    await services.batches.start()
    done = await wait_for(services, user, batch.id)

    assert (done.status, done.completed_tasks) == ("completed", 1)
    assert seen == [(Priority.FILL, True)] * 2  # its priority travelled with the call, both times
    assert [row.failures for row in await task_rows(services, batch.id)] == [0]
    logs = await usage_of(services, user)
    assert [log.status for log in logs] == ["succeeded"]  # the preempted attempt left no usage log
    assert before - await balance_units(services, user) == logs[0].cost_units  # charged once


async def test_only_a_preemptible_fill_slot_is_taken() -> None:
    pool = AdmissionPool("m", max_concurrency=2, queue_size=4)
    release = asyncio.Event()
    plain_fill = asyncio.ensure_future(_hold(pool, Priority.FILL, release))
    batch_low = asyncio.ensure_future(_hold(pool, Priority.BATCH_LOW, release, preemptible=True))
    await eventually(lambda: pool.running == 2)
    interactive = asyncio.ensure_future(_hold(pool, Priority.INTERACTIVE, release))
    await eventually(lambda: pool.queued == 1)
    await asyncio.sleep(0.01)

    # Neither is a preemptible fill holder: the interactive call waits for one of them to finish.
    assert (plain_fill.done(), batch_low.done(), pool.queued) == (False, False, 1)
    release.set()
    await asyncio.gather(plain_fill, batch_low, interactive)


async def test_a_preempted_holder_knows_why_and_its_slot_goes_to_the_waiter() -> None:
    pool = AdmissionPool("m", max_concurrency=1, queue_size=4)
    release = asyncio.Event()
    fill = asyncio.ensure_future(_hold(pool, Priority.FILL, release, preemptible=True))
    await eventually(lambda: pool.running == 1)
    assert not was_preempted(fill)
    interactive = asyncio.ensure_future(_hold(pool, Priority.INTERACTIVE, release))

    with pytest.raises(asyncio.CancelledError):
        await fill
    assert was_preempted(fill)
    await eventually(lambda: (pool.running, pool.queued) == (1, 0))  # the interactive call holds it
    release.set()
    await interactive
    assert pool.running == 0


async def test_a_fill_waiter_handed_the_slot_is_preemptible_before_it_runs_again() -> None:
    # The race seen under `serve --workers 2` (bench/profiles/fill_timeline_fill6.txt): a holder
    # leaves, the slot passes to a waiting fill call, and an interactive call arrives in the same
    # step, before that fill call has run again. It must still take the slot, not wait for the
    # whole fill generation.
    pool = AdmissionPool("m", max_concurrency=1, queue_size=4)
    first_done, release = asyncio.Event(), asyncio.Event()
    arrivals: list[asyncio.Future[None]] = []

    async def hold_then_call() -> None:
        async with pool.slot(Priority.BATCH_LOW):
            await first_done.wait()
            # It comes as this slot is handed to `fill`: it runs first, when `fill` has not yet.
            arrivals.append(asyncio.ensure_future(_hold(pool, Priority.INTERACTIVE, release)))

    first = asyncio.ensure_future(hold_then_call())
    await eventually(lambda: pool.running == 1)
    fill = asyncio.ensure_future(_hold(pool, Priority.FILL, release, preemptible=True))
    await eventually(lambda: pool.queued == 1)
    first_done.set()
    await first
    (interactive,) = arrivals

    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):  # unfixed, it waits for the whole fill generation
            await fill
    assert was_preempted(fill)
    await eventually(lambda: (pool.running, pool.queued) == (1, 0))  # the interactive call holds it
    release.set()
    await interactive
    assert pool.running == 0


async def _hold(
    pool: AdmissionPool, priority: Priority, release: asyncio.Event, *, preemptible: bool = False
) -> None:
    async with pool.slot(priority, preemptible=preemptible):
        await release.wait()


async def test_batch_waiters_never_get_an_interactive_call_refused() -> None:
    pool = AdmissionPool("m", max_concurrency=1, queue_size=1)
    release = asyncio.Event()
    holders = [
        asyncio.ensure_future(_hold(pool, p, release)) for p in (Priority.BATCH_LOW, Priority.BATCH_LOW)
    ]
    await eventually(lambda: pool.queued == 1)  # one batch call runs, one waits: the queue is full
    interactive = asyncio.ensure_future(_hold(pool, Priority.INTERACTIVE, release))
    await eventually(lambda: pool.queued == 2)  # ...yet the interactive call joins it

    with pytest.raises(RateLimited):
        await _hold(pool, Priority.FILL, release)  # a lower priority is refused

    release.set()
    await asyncio.gather(*holders, interactive)


async def test_cancel_stops_waiting_tasks_and_bills_the_running_one(
    services: Services, user: UserCreated
) -> None:
    runner = await runner_of(services, CHAT)
    runner.gate = asyncio.Event()
    before = await balance_units(services, user)
    batch = await submit(services, user, [chat_task(f"t{i}") for i in range(4)])
    await services.batches.start()
    await eventually(lambda: len(runner.calls) == 1)

    cancelling = await services.batches.cancel(user.id, batch.id)
    runner.gate.set()
    done = await wait_for(services, user, batch.id)

    assert cancelling.status == "cancelling"
    assert (done.status, done.completed_tasks, done.failed_tasks) == ("cancelled", 1, 0)
    assert done.cancelled_at is not None
    assert done.tasks is not None
    assert [t.status for t in done.tasks] == ["completed", "cancelled", "cancelled", "cancelled"]
    assert len(runner.calls) == 1
    assert before - await balance_units(services, user) == TASK_COST
    assert done.output_file_id is not None
    assert done.error_file_id is not None
    errors = (await services.files.content(user.id, done.error_file_id)).path.read_text().splitlines()
    assert [line.count('"batch_cancelled"') for line in errors] == [1, 1, 1]


async def test_cancelling_a_batch_with_nothing_running_ends_it_at_once(
    services: Services, user: UserCreated
) -> None:
    batch = await submit(services, user, [chat_task("a"), chat_task("b")])

    cancelled = await services.batches.cancel(user.id, batch.id)

    assert (cancelled.status, cancelled.completed_tasks) == ("cancelled", 0)
    assert cancelled.tasks is not None
    assert {t.status for t in cancelled.tasks} == {"cancelled"}
    assert await usage_of(services, user) == []


async def test_unfinished_tasks_expire_with_the_completion_window(
    services: Services, user: UserCreated
) -> None:
    runner = await runner_of(services, CHAT)
    runner.gate = asyncio.Event()
    batch = await submit(services, user, [chat_task(f"t{i}") for i in range(3)], completion_window="1s")
    await services.batches.start()
    await eventually(lambda: len(runner.calls) == 1)
    await wait_for(services, user, batch.id, statuses=frozenset({"in_progress"}))
    while await _expired_at(services, batch.id) is None:  # the window has passed: the batch expires
        await asyncio.sleep(0.05)
    runner.gate.set()

    done = await wait_for(services, user, batch.id)

    assert (done.status, done.completed_tasks) == ("expired", 1)
    assert done.tasks is not None
    assert [t.status for t in done.tasks] == ["completed", "expired", "expired"]
    assert done.error_file_id is not None
    errors = (await services.files.content(user.id, done.error_file_id)).path.read_text()
    assert errors.count('"batch_expired"') == 2


async def test_two_workers_on_one_store_never_run_a_task_twice(settings: Settings, user: UserCreated) -> None:
    tuning = {"batch_poll_seconds": 0.02, "batch_claim_chunk": 4}
    async with scripted_services(settings, catalog=BATCH_CATALOG, **tuning) as other:
        await other.batches.start()
        async with batch_services(settings, **tuning) as services:
            batch = await submit(services, user, [chat_task(f"t{i}", WIDE) for i in range(60)])
            await wait_for(services, user, batch.id)
            mine = len((await runner_of(services, WIDE)).calls)
            theirs = len((await runner_of(other, WIDE)).calls)
            logs = await usage_of(services, user)
        await other.batches.stop()

    assert mine + theirs == 60
    assert mine > 0
    assert theirs > 0
    assert len({log.request_id for log in logs}) == len(logs) == 60


async def test_tasks_of_a_dead_worker_run_again_billed_once(settings: Settings, user: UserCreated) -> None:
    async with batch_services(settings, start=False) as services:
        before = await balance_units(services, user)
        batch = await submit(services, user, [chat_task(f"t{i}") for i in range(4)])
        store = services.batches._store
        lost = await store.claim(DEAD_WORKER, 2, lease_seconds=0.2, max_priority=3)
        principal = await services.auth.authenticate(user.api_key)
        for task in lost:  # what the dead worker's attempts held when it died
            await services.ledger.reserve(principal, 5000, reservation_id=task.reservation_id)
        await services.batches.start()

        done = await wait_for(services, user, batch.id)

        assert (done.status, done.completed_tasks) == ("completed", 4)
        rows = await task_rows(services, batch.id)
        assert [row.failures for row in rows] == [1, 1, 0, 0]
        logs = await usage_of(services, user)
        assert [log.status for log in logs] == ["succeeded"] * 4
        assert before - await balance_units(services, user) == 4 * TASK_COST
        async with services.database.read() as conn:
            held = [reservation_id(task.batch_id, task.id, task.attempt) for task in lost]
            query = select(reservations.c.status).where(reservations.c.id.in_(held))
            assert sorted(r[0] for r in (await conn.execute(query)).all()) == ["released", "released"]


async def test_a_worker_that_lost_its_task_cannot_complete_or_bill_it(
    services: Services, user: UserCreated
) -> None:
    await submit(services, user, [chat_task("t")])
    store = services.batches._store
    [task] = await store.claim("worker-a:1:aaaa", 1, lease_seconds=60, max_priority=3)
    principal = await services.auth.authenticate(user.api_key)
    reservation = await services.ledger.reserve(principal, 5000, reservation_id=task.reservation_id)
    async with services.database.write() as conn:  # worker b took it over
        await conn.execute(
            update(batch_tasks).where(batch_tasks.c.id == task.id).values(claimed_by="worker-b:1:bbbb")
        )
    before = await balance_units(services, user)
    usage = UsageRecord(task.request_id, CHAT, "chat.completions", cost_units=750, latency_ms=1)
    guard = store.complete_guard(task, "worker-a:1:aaaa", status_code=200, response="{}", cost_units=750)

    with pytest.raises(SettlementRefused):
        await services.ledger.settle_guarded(reservation, usage, guard)

    assert await balance_units(services, user) == before  # still only held, nothing charged
    assert await usage_of(services, user) == []
    [row] = await task_rows(services, task.batch_id)
    assert (row.status, row.response) == ("running", None)


async def _expired_at(services: Services, batch_id: str) -> object:
    async with services.database.read() as conn:
        return (await conn.execute(select(batches.c.expired_at).where(batches.c.id == batch_id))).scalar()
