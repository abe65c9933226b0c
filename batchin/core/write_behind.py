"""A bounded write-behind buffer: the hot path appends and never waits; one background task
writes what gathered, in batches, one store call per batch.

Used for trace summaries and prompt runs. If the store falls behind, the oldest items are dropped
and counted rather than growing memory; a batch the store refuses is counted and dropped rather
than blocking callers. Drops are logged as a warning at the first and then each time their count
doubles (a store down for an hour must not also flood the log); `stats()` has the exact counts,
which /metrics exports. `flush()` writes everything queued so far (reads call it to see their own
writes); `close()` lets the writer finish what is queued, never cancelling it mid-batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["BufferStats", "WriteBehind", "warn_on_drop"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BufferStats:
    """A buffer's counts since start: items waiting, dropped unwritten (overflow), failed (refused)."""

    pending: int
    dropped: int
    failed: int


def warn_on_drop(log: logging.Logger, dropped: int, what: str, why: str) -> None:
    """Warn at the 1st, 2nd, 4th, 8th... drop: every episode is seen, none floods the log."""
    if dropped & (dropped - 1) == 0:
        log.warning("dropped %s (%d so far): %s", what, dropped, why)


class WriteBehind(Generic[T]):
    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[None]],
        *,
        capacity: int,
        batch: int,
        interval: float,
        what: str,
        log: logging.Logger,
    ) -> None:
        self._write = write
        self._capacity = capacity
        self._batch = batch
        self._interval = interval
        self._what = what  # names the items in the log line of a refused batch
        self._log = log
        self._pending: deque[T] = deque()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self.dropped = 0
        self.failed = 0
        self.written = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def stats(self) -> BufferStats:
        return BufferStats(pending=len(self._pending), dropped=self.dropped, failed=self.failed)

    def offer(self, item: T) -> None:
        """Queue one item; never waits. Call from the event loop."""
        if len(self._pending) >= self._capacity:
            self._pending.popleft()
            self.dropped += 1
            warn_on_drop(self._log, self.dropped, self._what, "the store is falling behind")
        self._pending.append(item)
        if not self._closed and (self._writer is None or self._writer.done()):
            self._writer = asyncio.get_running_loop().create_task(self._write_forever())
        self._wake.set()

    async def _write_forever(self) -> None:
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            # Let a batch gather (one store call per interval, not per item); close() cuts it short.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._interval)
            await self.flush()

    async def flush(self) -> None:
        """Write everything queued so far."""
        async with self._lock:
            while self._pending:
                batch = [self._pending.popleft() for _ in range(min(self._batch, len(self._pending)))]
                try:
                    await self._write(batch)
                    self.written += len(batch)
                except Exception:
                    # The store refused the batch (down, or a user deleted meanwhile): count and
                    # drop it rather than block callers or grow without bound.
                    self.failed += len(batch)
                    self._log.exception("could not store %d %s", len(batch), self._what)

    async def close(self) -> None:
        """Stop the writer after it has written what is queued."""
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._writer is not None:
            await self._writer
        await self.flush()
