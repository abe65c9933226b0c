"""Slots by priority: bounded concurrency, a bounded queue, priorities and preemption. One
implementation for both places a call is admitted: each API process's admission per model
(core/serving/admission.py) and, under `serve --workers N`, the shared engine's gate in the
supervisor (models/engine_relay.py), where the API processes' calls to one model meet. It lives
at the package's top level because models/ may not import core/.

Priority classes, served strictly in this order: interactive, batch_high, batch_low, fill. `fill`
therefore only runs on capacity nothing else is waiting for, and gives it back at once: a slot held
`preemptible` at fill priority is taken from its holder (its task is cancelled, and `was_preempted`
tells it why) as soon as a call of higher priority has to wait for one, so a fill batch never makes
an interactive call wait for a whole generation. A full queue refuses at once
(RateLimited with a Retry-After estimated from recent service times) instead of growing memory;
a waiter whose caller goes away leaves the queue. Only waiters at or above a call's priority count
towards its queue being full, so batch work waiting for a slot never gets an interactive call
refused (the batch worker bounds how many of its own tasks wait).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
import weakref
from dataclasses import dataclass, field
from enum import IntEnum

from batchin.errors import RateLimited

__all__ = ["AdmissionPool", "Priority", "was_preempted"]

# Tasks whose fill-priority slot was taken for a call of higher priority (they are being cancelled).
_preempted: weakref.WeakSet[asyncio.Task[object]] = weakref.WeakSet()


def was_preempted(task: asyncio.Task[object] | None) -> bool:
    """Whether `task` is being cancelled because its fill-priority slot was taken (see the module)."""
    return task is not None and task in _preempted


class Priority(IntEnum):
    INTERACTIVE = 0
    BATCH_HIGH = 1
    BATCH_LOW = 2
    FILL = 3


@dataclass(order=True)
class _Waiter:
    priority: int
    sequence: int
    future: asyncio.Future[None] = field(compare=False)
    # A preemptible fill waiter's task: preemptible from the moment it is handed a slot, before it
    # has run again (else a call arriving in between finds no holder to take the slot from).
    holder: asyncio.Task[object] | None = field(compare=False, default=None)


class AdmissionPool:
    def __init__(self, name: str, max_concurrency: int, queue_size: int) -> None:
        if max_concurrency < 1 or queue_size < 0:
            raise ValueError("max_concurrency must be ≥ 1 and queue_size ≥ 0")
        self.name = name
        self.max_concurrency = max_concurrency
        self.queue_size = queue_size
        self.running = 0
        self._waiters: list[_Waiter] = []
        self._sequence = itertools.count()
        self._service_ema = 1.0  # seconds a slot is typically held; feeds Retry-After
        self._preemptible: dict[asyncio.Task[object], None] = {}  # fill holders, oldest first

    @property
    def queued(self) -> int:
        return sum(1 for w in self._waiters if not w.future.done())

    def slot(self, priority: Priority = Priority.INTERACTIVE, *, preemptible: bool = False) -> _Slot:
        """Hold one unit of concurrency (`async with`); gives the seconds spent queued. `preemptible`
        (fill priority only): the holding task is cancelled when a call of higher priority must
        wait; only for a caller whose cancellation charges nothing (a batch task's call)."""
        return _Slot(self, priority, preemptible)

    def _enter(self, holder: asyncio.Task[object] | None) -> float:
        if holder is not None:
            self._preemptible[holder] = None  # already there when a waiter was handed the slot
        return time.monotonic()

    def _leave(self, holder: asyncio.Task[object] | None, started: float) -> None:
        if holder is not None:
            self._preemptible.pop(holder, None)
        held = time.monotonic() - started
        self._service_ema = 0.8 * self._service_ema + 0.2 * held
        self._release()

    async def _acquire(self, priority: Priority, holder: asyncio.Task[object] | None) -> float:
        if self.running < self.max_concurrency and not self._has_waiters_at_or_above(priority):
            self.running += 1
            return 0.0
        if self._queued_at_or_above(priority) >= self.queue_size:
            retry_after = self._service_ema * (self.queued + 1) / self.max_concurrency
            raise RateLimited(
                f"Model '{self.name}' is at capacity ({self.running} running, {self.queued} queued); "
                f"retry after {retry_after:.1f}s.",
                retry_after=retry_after,
            )
        future = asyncio.get_running_loop().create_future()
        waiter = _Waiter(int(priority), next(self._sequence), future, holder)
        heapq.heappush(self._waiters, waiter)
        if priority < Priority.FILL:
            self._preempt_one()
        enqueued = time.monotonic()
        try:
            await waiter.future
        except asyncio.CancelledError:
            if holder is not None:
                self._preemptible.pop(holder, None)
            if waiter.future.done() and not waiter.future.cancelled():
                self._release()  # we were handed a slot just as we were cancelled: pass it on
            raise
        return time.monotonic() - enqueued

    def _preempt_one(self) -> None:
        """Take the slot of the oldest preemptible fill holder (one per waiter that needs one)."""
        while self._preemptible:
            holder = next(iter(self._preemptible))
            del self._preemptible[holder]
            if not holder.done():
                _preempted.add(holder)
                holder.cancel()  # its slot passes to the waiter when its `slot` block unwinds
                return

    def _queued_at_or_above(self, priority: Priority) -> int:
        return sum(1 for w in self._waiters if w.priority <= priority and not w.future.done())

    def _has_waiters_at_or_above(self, priority: Priority) -> bool:
        return any(w.priority <= priority and not w.future.done() for w in self._waiters)

    def _release(self) -> None:
        while self._waiters:
            waiter = heapq.heappop(self._waiters)
            if not waiter.future.done():
                waiter.future.set_result(None)  # the slot passes straight to the waiter
                if waiter.holder is not None:
                    self._preemptible[waiter.holder] = None
                return
        self.running -= 1


class _Slot:
    """`AdmissionPool.slot`'s context: a class, not an `asynccontextmanager`, which costs an async
    generator (registered with the loop and unregistered when collected) and its frames per call."""

    __slots__ = ("_holder", "_pool", "_preemptible", "_priority", "_started")

    def __init__(self, pool: AdmissionPool, priority: Priority, preemptible: bool) -> None:
        self._pool, self._priority, self._preemptible = pool, priority, preemptible
        self._holder: asyncio.Task[object] | None = None
        self._started = 0.0

    async def __aenter__(self) -> float:
        preemptible = self._preemptible and self._priority is Priority.FILL
        holder = self._holder = asyncio.current_task() if preemptible else None
        queued_for = await self._pool._acquire(self._priority, holder)
        self._started = self._pool._enter(holder)
        return queued_for

    async def __aexit__(self, *exc_info: object) -> None:
        self._pool._leave(self._holder, self._started)
