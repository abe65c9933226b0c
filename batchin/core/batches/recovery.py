"""When the batch supervisor looks for tasks whose worker is gone.

A task is lost when its lease runs out (its worker stopped renewing it) or, sooner, when its worker
was a process on this host that no longer exists. Looking every supervisor pass (0.5 s) cost an idle
server several reads a second for nothing: no lease can run out before the earliest one held, and
a task claimed after a look holds a lease of `batch_lease_seconds` from its claim. So each look
also reads the earliest lease held and the next look comes when that one runs out, or after
`_DEAD_CHECK_SECONDS` while tasks run (a dead process on this host is found that soon), or after
`_QUIET_SECONDS` (at most the lease) while none does. The first look is at once: a restarted
process takes back at start what its killed predecessor held.
"""

from __future__ import annotations

import time

from batchin.config import Settings
from batchin.core.batches.store import TaskStore
from batchin.core.batches.tasks import now_ms
from batchin.core.batches.worker import TaskDispatcher

__all__ = ["LostTaskWatch"]

_DEAD_CHECK_SECONDS = 5.0  # while tasks run: how often to look for those of dead processes on this host
_QUIET_SECONDS = 30.0  # while none runs: a task claimed meanwhile holds its lease far longer


class LostTaskWatch:
    def __init__(self, settings: Settings, store: TaskStore, dispatcher: TaskDispatcher) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._floor = settings.batch_poll_seconds  # never look again sooner than the poll interval
        self._quiet = min(_QUIET_SECONDS, max(settings.batch_lease_seconds, self._floor))
        self._due = 0.0  # time.monotonic() of the next look

    def seconds_until_due(self) -> float:
        return max(0.0, self._due - time.monotonic())

    async def look_if_due(self) -> bool:
        """Send the tasks of lost workers back to pending when a look is due; True when it looked."""
        if time.monotonic() < self._due:
            return False
        await self._dispatcher.recover_lost(include_dead_here=True)
        earliest = await self._store.earliest_lease()
        wait = self._quiet if earliest is None else min(_DEAD_CHECK_SECONDS, (earliest - now_ms()) / 1000)
        self._due = time.monotonic() + max(wait, self._floor)
        return True
