"""Admission pools: bounded concurrency, a bounded queue, strict priorities, FIFO within a class."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from batchin.core.serving.admission import AdmissionController, AdmissionPool, Priority
from batchin.errors import RateLimited


async def turns(n: int = 5) -> None:
    """Let every ready task run until it blocks."""
    for _ in range(n):
        await asyncio.sleep(0)


async def hold(
    pool: AdmissionPool, release: asyncio.Event, priority: Priority = Priority.INTERACTIVE
) -> None:
    async with pool.slot(priority):
        await release.wait()


async def acquire_at_once(pool: AdmissionPool) -> None:
    async with asyncio.timeout(0.1), pool.slot():  # "at once": a refusal never waits for a slot
        pass


async def record(pool: AdmissionPool, priority: Priority, order: list[str], name: str) -> None:
    async with pool.slot(priority):
        order.append(name)


async def test_no_more_than_max_concurrency_hold_slots() -> None:
    pool = AdmissionPool("m", max_concurrency=2, queue_size=4)
    release = asyncio.Event()
    holders = [asyncio.create_task(hold(pool, release)) for _ in range(3)]
    await turns()
    assert (pool.running, pool.queued) == (2, 1)
    release.set()
    await asyncio.gather(*holders)
    assert (pool.running, pool.queued) == (0, 0)


async def test_a_queued_call_gets_the_slot_a_finished_one_frees() -> None:
    pool = AdmissionPool("m", max_concurrency=1, queue_size=4)
    first, second = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(hold(pool, first))
    waiter = asyncio.create_task(hold(pool, second))
    await turns()
    first.set()
    await holder
    await turns()
    assert (pool.running, pool.queued) == (1, 0)
    second.set()
    await waiter
    assert pool.running == 0


async def test_a_full_queue_refuses_at_once_with_retry_after() -> None:
    pool = AdmissionPool("m", max_concurrency=1, queue_size=1)
    release = asyncio.Event()
    holders = [asyncio.create_task(hold(pool, release)) for _ in range(2)]
    await turns()
    with pytest.raises(RateLimited) as refused:
        await acquire_at_once(pool)
    assert refused.value.status == 429
    assert int(refused.value.headers["Retry-After"]) >= 1
    assert (pool.running, pool.queued) == (1, 1)
    release.set()
    await asyncio.gather(*holders)


async def test_a_pool_without_a_queue_refuses_when_busy() -> None:
    pool = AdmissionPool("m", max_concurrency=1, queue_size=0)
    release = asyncio.Event()
    holder = asyncio.create_task(hold(pool, release))
    await turns()
    with pytest.raises(RateLimited):
        await acquire_at_once(pool)
    release.set()
    await holder


async def test_waiters_are_served_in_strict_priority_order() -> None:
    pool = AdmissionPool("m", max_concurrency=1, queue_size=8)
    release = asyncio.Event()
    holder = asyncio.create_task(hold(pool, release))
    await turns()
    order: list[str] = []
    waiters = []
    for priority in (Priority.FILL, Priority.BATCH_LOW, Priority.BATCH_HIGH, Priority.INTERACTIVE):
        waiters.append(asyncio.create_task(record(pool, priority, order, priority.name)))
        await turns()
    release.set()
    await asyncio.gather(holder, *waiters)
    assert order == ["INTERACTIVE", "BATCH_HIGH", "BATCH_LOW", "FILL"]


async def test_waiters_of_one_class_are_served_first_in_first_out() -> None:
    pool = AdmissionPool("m", max_concurrency=1, queue_size=8)
    release = asyncio.Event()
    holder = asyncio.create_task(hold(pool, release))
    await turns()
    order: list[str] = []
    waiters = []
    for name in ("first", "second", "third", "fourth"):
        waiters.append(asyncio.create_task(record(pool, Priority.BATCH_LOW, order, name)))
        await turns()
    release.set()
    await asyncio.gather(holder, *waiters)
    assert order == ["first", "second", "third", "fourth"]


async def test_fill_never_runs_while_interactive_waits() -> None:
    pool = AdmissionPool("m", max_concurrency=1, queue_size=8)
    release, interactive_release = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(hold(pool, release))
    await turns()
    order: list[str] = []
    fill = asyncio.create_task(record(pool, Priority.FILL, order, "fill"))
    await turns()
    interactive = asyncio.create_task(hold(pool, interactive_release, Priority.INTERACTIVE))
    await turns()
    release.set()
    await holder
    await turns()
    assert order == []  # the slot went to the interactive call, queued after fill
    assert (pool.running, pool.queued) == (1, 1)
    interactive_release.set()
    await asyncio.gather(interactive, fill)
    assert order == ["fill"]


async def test_a_fill_arrival_queues_behind_a_waiting_interactive_call() -> None:
    pool = AdmissionPool("m", max_concurrency=1, queue_size=8)
    release = asyncio.Event()
    holder = asyncio.create_task(hold(pool, release))
    await turns()
    order: list[str] = []
    interactive = asyncio.create_task(record(pool, Priority.INTERACTIVE, order, "interactive"))
    await turns()
    fill = asyncio.create_task(record(pool, Priority.FILL, order, "fill"))
    await turns()
    release.set()
    await asyncio.gather(holder, interactive, fill)
    assert order == ["interactive", "fill"]


async def test_a_cancelled_waiter_leaves_the_queue_and_leaks_no_slot() -> None:
    pool = AdmissionPool("m", max_concurrency=1, queue_size=1)
    release = asyncio.Event()
    holder = asyncio.create_task(hold(pool, release))
    await turns()
    waiter = asyncio.create_task(hold(pool, asyncio.Event()))
    await turns()
    assert pool.queued == 1
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    assert pool.queued == 0
    release.set()
    await holder
    assert pool.running == 0
    async with asyncio.timeout(0.1), pool.slot():  # the slot is free again
        assert pool.running == 1
    assert pool.running == 0


async def test_a_waiter_cancelled_as_it_is_handed_the_slot_passes_it_on() -> None:
    pool = AdmissionPool("m", max_concurrency=1, queue_size=4)
    release = asyncio.Event()
    order: list[str] = []
    doomed: asyncio.Task[None] | None = None

    async def hold_then_cancel() -> None:
        async with pool.slot():
            await release.wait()
        assert doomed is not None
        doomed.cancel()  # in the same step as the hand-over: `doomed` holds the slot but has not run

    holder = asyncio.create_task(hold_then_cancel())
    await turns()
    doomed = asyncio.create_task(record(pool, Priority.INTERACTIVE, order, "doomed"))
    await turns()
    next_in_line = asyncio.create_task(record(pool, Priority.INTERACTIVE, order, "next"))
    await turns()
    release.set()
    await asyncio.gather(holder, doomed, next_in_line, return_exceptions=True)
    assert doomed.cancelled()
    assert order == ["next"]
    assert (pool.running, pool.queued) == (0, 0)


async def test_pools_are_kept_per_lane_and_model() -> None:
    admission = AdmissionController()
    shared = admission.pool("m", lane="shared", max_concurrency=2, queue_size=3)
    assert admission.pool("m", lane="shared", max_concurrency=9, queue_size=9) is shared
    lane = admission.pool("m", lane="gold", max_concurrency=1, queue_size=0)
    assert lane is not shared
    assert (lane.name, lane.max_concurrency, lane.queue_size) == ("m@gold", 1, 0)
    assert set(admission.snapshot()) == {"shared/m", "gold/m"}
