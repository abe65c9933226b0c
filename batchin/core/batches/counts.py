"""How many of a running batch's tasks have completed and failed, read cheaply enough to poll.

Counting means reading the batch's finished tasks from the (batch_id, status) index: a million of
them for a big batch near its end, and clients poll GET /v1/batches/{id} every second or so, each
API process its own. So a process reuses a count of a running batch for a time in proportion to the
tasks it counted, `_SECONDS_PER_TASK` each (about twenty times what a database takes to count one
index entry; at most `_MAX_FRESH_SECONDS`), and hands it to every caller meanwhile (concurrent
callers share one read). Counting then takes a few percent of a connection whatever the poll rate;
a batch with thousands of finished tasks is counted afresh every few ms (as good as live), one with
a million every 5 s. The window follows the count, not the clock: a loaded server, whose reads
take longer, does not serve older counts. The counts are at most that old, and only ever grow (a
finished task stays finished). A finished batch carries its own final counts on its row (view.py) and is never
counted; a cancel in this process forgets what was read, since the batch changed here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from batchin.core.batches.store import TaskStore

__all__ = ["LiveCounts"]

_SECONDS_PER_TASK = 5e-6  # a count of n finished tasks is reused for n times this...
_MAX_FRESH_SECONDS = 5.0  # ...and never longer
_MAX_REMEMBERED = 10_000  # batches whose counts are kept (running ones are far fewer)

Counts = dict[str, int]


@dataclass(slots=True)
class _Read:
    counts: asyncio.Future[Counts]
    until: float  # time.monotonic() while it may be handed out; inf while it runs


class LiveCounts:
    def __init__(self, store: TaskStore) -> None:
        self._store = store
        self._reads: dict[str, _Read] = {}
        self._running: set[asyncio.Task[None]] = set()  # held here: the loop keeps only weak refs

    async def of(self, batch_ids: Sequence[str]) -> dict[str, Counts]:
        """Completed and failed tasks per batch (statuses without tasks are left out)."""
        now = time.monotonic()
        wanted = list(dict.fromkeys(batch_ids))
        stale = [b for b in wanted if (read := self._reads.get(b)) is None or read.until < now]
        if stale:
            self._start_read(stale)
        reads = {b: self._reads[b].counts for b in wanted}
        # Shielded: a caller that goes away does not cancel the read others wait for.
        return {b: dict(await asyncio.shield(counts)) for b, counts in reads.items()}

    def forget(self, batch_id: str) -> None:
        """The batch changed here (cancelled): count it again at the next read."""
        self._reads.pop(batch_id, None)

    def _start_read(self, batch_ids: list[str]) -> None:
        if len(self._reads) > _MAX_REMEMBERED:
            self._reads = {b: r for b, r in self._reads.items() if not r.counts.done()}
        loop = asyncio.get_running_loop()
        futures = {b: loop.create_future() for b in batch_ids}
        for batch_id, future in futures.items():
            self._reads[batch_id] = _Read(future, float("inf"))
        task = loop.create_task(self._read(futures), name="batch-counts")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _read(self, futures: dict[str, asyncio.Future[Counts]]) -> None:
        try:
            counts = await self._store.finished_counts(list(futures))
        except Exception as exc:
            for batch_id, future in futures.items():
                future.set_exception(exc)
                future.exception()  # marked retrieved: no caller may be waiting any more
                if (read := self._reads.get(batch_id)) is not None and read.counts is future:
                    del self._reads[batch_id]
            return
        now = time.monotonic()
        for batch_id, future in futures.items():
            future.set_result(counts[batch_id])
            if (read := self._reads.get(batch_id)) is not None and read.counts is future:
                counted = sum(counts[batch_id].values())
                read.until = now + min(_MAX_FRESH_SECONDS, counted * _SECONDS_PER_TASK)
