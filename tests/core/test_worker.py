"""The durable-worker base (batchin/core/worker.py): wake-ups are never lost, a stop drains a claim
under way within its deadline, failed claims back off and the loop goes on, empty claims back off
until a wake() or claimed work, stop() is idempotent, and no more than `max_in_flight` items are
worked on at once. A fake worker claims from a list.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys

import pytest

from batchin.core.worker import (
    IDLE_POLL_CAP_SECONDS,
    DurableWorker,
    IdleBackoff,
    backoff_seconds,
    dead_here,
    new_worker_id,
)

LOGGER = "tests.fake_worker"
NEVER = 3600.0  # a poll interval no test waits out: only wake() or a free slot moves the loop
SETTLE = 10.0  # a bound for awaiting what must happen; reaching it fails the test


class FakeWorker(DurableWorker[str]):
    def __init__(
        self,
        *,
        poll_seconds: float = NEVER,
        drain_seconds: float = 5.0,
        max_in_flight: int = 1,
        max_idle_seconds: float = IDLE_POLL_CAP_SECONDS,
    ) -> None:
        super().__init__(
            name="fake-worker",
            log=logging.getLogger(LOGGER),
            worker_id="here:1:fake",
            poll_seconds=poll_seconds,
            max_in_flight=max_in_flight,
            drain_seconds=drain_seconds,
            max_backoff_seconds=1.0,
            max_idle_seconds=max_idle_seconds,
        )
        self.due: list[str] = []
        self.claims = 0
        self.claimed_by: dict[str, int] = {}  # item → the number of the claim that took it
        self.failing_claims = 0  # this many claims fail before one succeeds
        self.hold_claim: asyncio.Event | None = None  # a claim waits for it after taking its items
        self.claim_waiting = asyncio.Event()
        self.claim_cancelled = False
        self.hold_work = asyncio.Event()
        self.hold_work.set()
        self.failing_work: set[str] = set()
        self.started: asyncio.Queue[str] = asyncio.Queue()
        self.finished: asyncio.Queue[str] = asyncio.Queue()
        self.cancelled: list[str] = []
        self.busy = 0
        self.peak = 0

    async def _claim_items(self, limit: int) -> list[str]:
        self.claims += 1
        if self.failing_claims:
            self.failing_claims -= 1
            raise RuntimeError("the store is away")
        taken, self.due = self.due[:limit], self.due[limit:]
        self.claimed_by.update(dict.fromkeys(taken, self.claims))
        if self.hold_claim is not None:
            self.claim_waiting.set()
            try:
                await self.hold_claim.wait()
            except asyncio.CancelledError:
                self.claim_cancelled = True
                self.due = taken + self.due  # the claim's transaction rolls back
                raise
        return taken

    async def _process(self, item: str) -> None:
        self.busy += 1
        self.peak = max(self.peak, self.busy)
        self.started.put_nowait(item)
        try:
            await self.hold_work.wait()
            if item in self.failing_work:
                raise RuntimeError(f"{item} broke")
        except asyncio.CancelledError:
            self.cancelled.append(item)
            raise
        finally:
            self.busy -= 1
        self.finished.put_nowait(item)


async def next_of(queue: asyncio.Queue[str]) -> str:
    return await asyncio.wait_for(queue.get(), SETTLE)


async def test_a_wake_during_a_claim_is_not_lost() -> None:
    worker = FakeWorker()
    worker.hold_claim = asyncio.Event()
    await worker.start()
    await asyncio.wait_for(worker.claim_waiting.wait(), SETTLE)  # the claim has found nothing yet
    worker.due.append("job-1")  # submitted while the claim runs
    worker.wake()
    worker.hold_claim.set()  # the claim comes back empty
    assert await next_of(worker.finished) == "job-1"  # at once, not after the hour-long poll
    assert worker.claimed_by == {"job-1": 2}
    await worker.stop()


async def test_a_wake_while_idle_claims_at_once() -> None:
    worker = FakeWorker()
    await worker.start()
    worker.due.append("job-1")
    worker.wake()
    assert await next_of(worker.finished) == "job-1"
    await worker.stop()


async def test_a_stop_lets_a_claim_under_way_finish_and_starts_nothing_it_claimed() -> None:
    worker = FakeWorker()
    worker.due.append("job-1")
    worker.hold_claim = asyncio.Event()
    await worker.start()
    await asyncio.wait_for(worker.claim_waiting.wait(), SETTLE)
    stopping = asyncio.create_task(worker.stop())
    while worker.running:
        await asyncio.sleep(0)
    worker.hold_claim.set()  # the claim returns within the drain deadline
    await asyncio.wait_for(stopping, SETTLE)
    assert not worker.claim_cancelled
    assert (worker.due, worker.started.qsize(), worker.claims) == ([], 0, 1)  # claimed, left unstarted


async def test_a_stop_cancels_a_claim_that_outlives_the_drain_deadline() -> None:
    worker = FakeWorker(drain_seconds=0.05)
    worker.due.append("job-1")
    worker.hold_claim = asyncio.Event()  # never set: the claim hangs
    await worker.start()
    await asyncio.wait_for(worker.claim_waiting.wait(), SETTLE)
    await asyncio.wait_for(worker.stop(), SETTLE)
    assert worker.claim_cancelled
    assert (worker.due, worker.started.qsize()) == (["job-1"], 0)  # rolled back: still due


async def test_a_stop_cancels_the_work_in_flight() -> None:
    worker = FakeWorker()
    worker.due.append("job-1")
    worker.hold_work.clear()
    await worker.start()
    assert await next_of(worker.started) == "job-1"
    await worker.stop()
    assert (worker.cancelled, worker.finished.qsize()) == (["job-1"], 0)


async def test_failed_claims_back_off_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    worker = FakeWorker(poll_seconds=0.01)
    worker.failing_claims = 2
    worker.due.append("job-1")
    await worker.start()
    assert await next_of(worker.finished) == "job-1"
    await worker.stop()
    assert worker.claimed_by == {"job-1": 3}
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        "fake-worker: claiming failed; trying again in 0.01s",
        "fake-worker: claiming failed; trying again in 0.02s",
    ]


async def test_a_failed_item_is_logged_and_the_next_one_runs(caplog: pytest.LogCaptureFixture) -> None:
    worker = FakeWorker()
    worker.failing_work = {"job-1"}
    worker.due.extend(["job-1", "job-2"])
    await worker.start()
    assert await next_of(worker.finished) == "job-2"
    await worker.stop()
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        "fake-worker: working on an item failed"
    ]


def test_the_back_off_doubles_up_to_its_cap_and_never_below_the_poll() -> None:
    assert [backoff_seconds(n, 0.5, 4.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff_seconds(3, 10.0, 4.0) == 10.0


class IdleWaitsWorker(FakeWorker):
    """Records the idle waits the loop asks for instead of waiting them out, except the
    `pause_at`-th, which lasts until a wake(); `on_wait` runs at each wait (by its number)."""

    def __init__(self, pause_at: int) -> None:
        super().__init__(poll_seconds=1.0, max_idle_seconds=8.0)
        self.waits: list[float] = []
        self.pause_at = pause_at
        self.paused = asyncio.Event()
        self.on_wait: dict[int, str] = {}  # wait number → an item that falls due then (no wake)

    async def _idle(self, seconds: float) -> None:
        self.waits.append(seconds)
        if (item := self.on_wait.get(len(self.waits))) is not None:
            self.due.append(item)
        if len(self.waits) == self.pause_at:
            self.paused.set()
            await super()._idle(NEVER)
        else:
            await asyncio.sleep(0)


async def test_empty_claims_back_off_to_the_cap_and_a_wake_resets_it() -> None:
    worker = IdleWaitsWorker(pause_at=5)
    await worker.start()
    await asyncio.wait_for(worker.paused.wait(), SETTLE)
    assert worker.waits == [1.0, 2.0, 4.0, 8.0, 8.0]  # poll, doubled per empty claim, capped
    worker.pause_at, worker.paused = 7, asyncio.Event()
    worker.wake()  # nothing due: the claim it brings is empty, and the back-off starts over
    await asyncio.wait_for(worker.paused.wait(), SETTLE)
    await worker.stop()
    assert worker.waits[5:] == [1.0, 2.0]


async def test_claimed_work_resets_the_idle_back_off() -> None:
    worker = IdleWaitsWorker(pause_at=6)
    worker.on_wait = {3: "job-1"}  # due during the third wait, found by the claim after it
    await worker.start()
    await asyncio.wait_for(worker.paused.wait(), SETTLE)
    await worker.stop()
    assert worker.claimed_by == {"job-1": 4}
    # The claim that took job-1 filled the one slot (no wait after it); the next came back empty.
    assert worker.waits == [1.0, 2.0, 4.0, 1.0, 2.0, 4.0]


def test_the_idle_back_off_doubles_from_the_poll_to_its_cap_and_resets() -> None:
    backoff = IdleBackoff(0.5, 4.0)
    assert [backoff.next_wait() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next_wait() == 0.5
    assert IdleBackoff(10.0, 4.0).next_wait() == 10.0  # a poll above the cap is kept


async def test_stop_is_idempotent_and_a_stopped_worker_starts_again() -> None:
    worker = FakeWorker()
    await worker.stop()  # never started
    await worker.start()
    await worker.stop()
    await worker.stop()
    assert not worker.running
    worker.due.append("job-1")
    await worker.start()
    assert await next_of(worker.finished) == "job-1"
    await worker.stop()
    await worker.stop()


async def test_no_more_than_max_in_flight_items_run_at_once() -> None:
    worker = FakeWorker(max_in_flight=2)
    worker.hold_work.clear()
    worker.due.extend(f"job-{i}" for i in range(5))
    await worker.start()
    assert {await next_of(worker.started), await next_of(worker.started)} == {"job-0", "job-1"}
    worker.hold_work.set()
    done = {await next_of(worker.finished) for _ in range(5)}
    await worker.stop()
    assert done == {f"job-{i}" for i in range(5)}
    assert worker.peak == 2


def test_a_worker_id_names_a_live_process_on_this_host() -> None:
    child = [sys.executable, "-c", "import os; print(os.getpid())"]
    gone = int(subprocess.run(child, capture_output=True, check=True).stdout)
    host = new_worker_id().partition(":")[0]
    assert not dead_here(new_worker_id())
    assert dead_here(f"{host}:{gone}:0000")
    assert not dead_here(f"elsewhere:{gone}:0000")
