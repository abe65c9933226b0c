"""The durable-worker base: the wake / claim / lease / stop loop the background workers share.

Work lives in rows; a worker only claims rows (under its `worker_id`, with a lease or claim
expiry) and works on each in a task of its own. The subclass supplies the claim (`_claim_items`)
and the work (`_process`); this loop supplies the rest:

- wake(): the wake event is cleared *before* each claim, so a wake() that arrives while a claim
  runs makes the wait after it return at once: a row added meanwhile is not left for the poll;
- a claim that filled every free slot is followed by another at once; a short one by a wait for
  wake() or the poll interval. At most `max_in_flight` items (or the subclass's `_capacity`) are
  worked on at once; when none is free the loop waits for one (`_capacity_changed`);
- idle back-off: while claims come back empty the wait doubles, from the poll interval up to
  `max_idle_seconds` (IDLE_POLL_CAP_SECONDS), so an idle server costs next to nothing; wake() and
  any claimed item bring it back to the poll interval. Work submitted in this process wakes its
  worker at once; work submitted in another process (or replica) is found within the cap, and work
  this process schedules for later (a retry) wakes it when due (`_wake_in`);
- lease renewal every `renew_seconds` while anything is in flight (the subclass's `_renew_leases`);
- back-off: a failed claim waits one poll interval, each further failure in a row twice as long,
  up to `max_backoff_seconds`; a wake() still cuts the wait short;
- stop(), idempotent: the loop ends at once from any wait and the work in flight is cancelled;
  a claim under way is given `drain_seconds` to return (then it is cancelled and its transaction
  rolls back). What it claimed is not started: the subclass's stop hands it back, or its lease
  runs out and a worker takes it over, as after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Generic, TypeVar

__all__ = [
    "IDLE_POLL_CAP_SECONDS",
    "DurableWorker",
    "IdleBackoff",
    "backoff_seconds",
    "dead_here",
    "new_worker_id",
]

Item = TypeVar("Item")

_HOST = socket.gethostname()[:32]
# The longest an idle worker waits between two looks for work nobody woke it for (work another
# process submitted): the bound docs/reference/architecture.mdx promises.
IDLE_POLL_CAP_SECONDS = 4.0
_WAKE_BUCKET_SECONDS = 0.05  # wake-ups scheduled this close together share one timer


def new_worker_id() -> str:
    """`host:pid:random`: unique per worker, and tells which process on which host claimed a row."""
    return f"{_HOST}:{os.getpid()}:{secrets.token_hex(4)}"


def dead_here(worker_id: str) -> bool:
    """A worker of a process on this host that no longer exists."""
    host, _, rest = worker_id.partition(":")
    pid_text = rest.partition(":")[0]
    if host != _HOST or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def backoff_seconds(failures: int, poll_seconds: float, max_backoff_seconds: float) -> float:
    """The wait after `failures` failed claims in a row: the poll interval, doubled per further
    failure, capped (never below the poll interval)."""
    return min(poll_seconds * 2.0 ** max(failures - 1, 0), max(poll_seconds, max_backoff_seconds))


class IdleBackoff:
    """The wait before the next look for work while looks come back empty: the poll interval,
    doubled per empty look in a row, up to `cap` (never below the poll interval). reset() when
    work turns up or a wake() says some may have."""

    def __init__(self, poll_seconds: float, cap_seconds: float) -> None:
        self._poll = poll_seconds
        self._cap = cap_seconds
        self._empty = 0

    def reset(self) -> None:
        self._empty = 0

    def next_wait(self) -> float:
        """The wait after one more empty look."""
        self._empty = min(self._empty + 1, 64)  # poll * 2**64 is past any cap
        return backoff_seconds(self._empty, self._poll, self._cap)


class DurableWorker(ABC, Generic[Item]):
    """One background loop claiming `Item`s and working on each in its own task."""

    def __init__(
        self,
        *,
        name: str,
        log: logging.Logger,
        worker_id: str,
        poll_seconds: float,
        max_in_flight: int = 1,
        renew_seconds: float | None = None,
        drain_seconds: float = 5.0,
        max_backoff_seconds: float = 30.0,
        max_idle_seconds: float = IDLE_POLL_CAP_SECONDS,
    ) -> None:
        self.worker_id = worker_id
        self._name = name
        self._log = log
        self._poll_seconds = poll_seconds
        self._max_in_flight = max_in_flight
        self._renew_seconds = renew_seconds
        self._drain_seconds = drain_seconds
        self._max_backoff_seconds = max_backoff_seconds
        self._idle_backoff = IdleBackoff(poll_seconds, max_idle_seconds)
        self._wake_timers: dict[int, asyncio.TimerHandle] = {}  # by due bucket
        self._wake = asyncio.Event()  # work may be due
        self._room = asyncio.Event()  # a slot may be free
        self._stopping = False
        self._caught_up = False  # the last claim found less than it asked for (or failed)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None

    # -- what a subclass supplies ----------------------------------------------------------------

    @abstractmethod
    async def _claim_items(self, limit: int) -> Sequence[Item]:
        """Claim up to `limit` due items for this worker, atomically and under a lease."""

    @abstractmethod
    async def _process(self, item: Item) -> None:
        """Work on one claimed item; an error is logged, the item stays durable."""

    async def _renew_leases(self) -> None:
        """Extend the leases of the items in flight (called only with `renew_seconds` set)."""

    def _capacity(self) -> int:
        """How many items to claim now; 0 waits for a finished item or `_capacity_changed`."""
        return self._max_in_flight - len(self._in_flight)

    def _work_finished(self) -> None:
        """Called after each item's work ends, its slot already free."""

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None

    def wake(self) -> None:
        self._idle_backoff.reset()
        self._wake.set()

    def _wake_in(self, seconds: float) -> None:
        """Wake the loop when work this process scheduled for later falls due (a retry), rather
        than leave it to the idle poll. Wake-ups due within a few ms of each other share a timer."""
        loop = asyncio.get_running_loop()
        bucket = int((loop.time() + max(seconds, 0.0)) / _WAKE_BUCKET_SECONDS) + 1
        if bucket not in self._wake_timers:
            self._wake_timers[bucket] = loop.call_at(bucket * _WAKE_BUCKET_SECONDS, self._timer_fired, bucket)

    def _timer_fired(self, bucket: int) -> None:
        self._wake_timers.pop(bucket, None)
        self.wake()

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._stopping = False
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._loop(), name=self._name)
            if self._renew_seconds is not None and self._renewer is None:
                renewing = self._renew_forever(self._renew_seconds)
                self._renewer = loop.create_task(renewing, name=f"{self._name}-lease")

    async def stop(self) -> None:
        """Stop claiming and cancel the work in flight; a claim under way may finish first, for
        up to `drain_seconds`. Safe to call again, or without a start."""
        task, self._task = self._task, None
        renewer, self._renewer = self._renewer, None
        for timer in self._wake_timers.values():
            timer.cancel()
        self._wake_timers.clear()
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        self._room.set()
        working = list(self._in_flight)
        extra = [] if renewer is None else [renewer]
        for running in (*working, *extra):
            running.cancel()
        _, pending = await asyncio.wait({task}, timeout=self._drain_seconds)
        if pending:
            self._log.warning("%s: still claiming at the drain deadline; cancelled", self._name)
            task.cancel()
        ends = await asyncio.gather(task, *working, *extra, return_exceptions=True)
        if isinstance(ends[0], Exception):
            self._log.error("%s: the loop had failed", self._name, exc_info=ends[0])

    # -- the loop --------------------------------------------------------------------------------

    async def _loop(self) -> None:
        failures = 0
        try:
            while not self._stopping:
                wanted = self._capacity()
                if wanted <= 0:
                    self._room.clear()
                    await self._room.wait()
                    continue
                self._wake.clear()  # before the claim: a wake() during it is not lost
                try:
                    items = await self._claim_items(wanted)
                except Exception:
                    failures += 1
                    delay = backoff_seconds(failures, self._poll_seconds, self._max_backoff_seconds)
                    self._log.exception("%s: claiming failed; trying again in %.3gs", self._name, delay)
                    self._caught_up = True
                    await self._idle(delay)
                    continue
                failures = 0
                if self._stopping:
                    return  # claimed, not started: handed back by the stop, or taken over after the lease
                self._caught_up = len(items) < wanted
                for item in items:
                    self._spawn(item)
                if items:
                    self._idle_backoff.reset()
                if self._caught_up:
                    # A wake() meanwhile resets the back-off and ends this wait at once.
                    await self._idle(self._poll_seconds if items else self._idle_backoff.next_wait())
        finally:
            for running in list(self._in_flight):
                running.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _idle(self, seconds: float) -> None:
        """Until wake() or `seconds` (a finished item frees a slot, but makes nothing due)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _capacity_changed(self) -> None:
        """A slot may be free: a loop waiting for one looks again."""
        self._room.set()

    def _spawn(self, item: Item) -> None:
        task = asyncio.get_running_loop().create_task(self._process(item))
        self._in_flight.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self._log.error("%s: working on an item failed", self._name, exc_info=error)
        self._room.set()
        self._work_finished()

    async def _renew_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if self._in_flight:
                try:
                    await self._renew_leases()
                except Exception:
                    self._log.exception("%s: renewing leases failed", self._name)
