"""Engine work on a thread that stops when its caller is cancelled (batchin/models/stoppable.py)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from batchin.models.stoppable import StopFlag, WorkStopped, run_stoppable


class Steps:
    """Work of many small steps that checks the flag between them and says how far it got."""

    def __init__(self, total: int = 100_000) -> None:
        self.total = total
        self.done = 0
        self.started = threading.Event()
        self.ended = threading.Event()
        self.stopped = False

    def __call__(self, stop: StopFlag) -> int:
        self.started.set()
        try:
            for _ in range(self.total):
                stop.check()
                threading.Event().wait(0.001)  # a unit of engine work
                self.done += 1
        except WorkStopped:
            self.stopped = True
            raise
        finally:
            self.ended.set()
        return self.done


@pytest.fixture
def executor() -> Any:
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown(wait=True)


async def test_work_that_is_not_cancelled_returns_its_result(executor: ThreadPoolExecutor) -> None:
    assert await run_stoppable(executor, Steps(total=3)) == 3


async def test_cancelling_stops_the_thread_at_its_next_check_before_the_cancel_completes(
    executor: ThreadPoolExecutor,
) -> None:
    work = Steps()
    call = asyncio.ensure_future(run_stoppable(executor, work))
    await asyncio.to_thread(work.started.wait, 10)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    # By the time the cancellation has gone through, the thread has stopped, well short of its end.
    assert work.ended.is_set()
    assert work.stopped
    assert work.done < work.total


async def test_the_executor_is_free_for_the_next_call_once_a_cancelled_one_has_ended(
    executor: ThreadPoolExecutor,
) -> None:
    first = Steps()
    call = asyncio.ensure_future(run_stoppable(executor, first))
    await asyncio.to_thread(first.started.wait, 10)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await run_stoppable(executor, Steps(total=2)) == 2


async def test_an_error_of_the_work_reaches_the_caller(executor: ThreadPoolExecutor) -> None:
    def broken(_stop: StopFlag) -> None:
        raise ValueError("engine fault")

    with pytest.raises(ValueError, match="engine fault"):
        await run_stoppable(executor, broken)


def test_a_flag_raises_only_once_set() -> None:
    flag = StopFlag()
    flag.check()
    assert not flag.is_set
    flag.set()
    with pytest.raises(WorkStopped):
        flag.check()
