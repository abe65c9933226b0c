"""An engine whose work is many small units on a thread of its own, checking its stop flag between
them (models/stoppable.py), and which says how far its last call got: for tests of cancellation
across the worker pipe."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from batchin.models.base import RunnerHealth
from batchin.models.catalog import CatalogEntry
from batchin.models.stoppable import StopFlag, run_stoppable


class UnitsRunner:
    def __init__(self, entry: CatalogEntry) -> None:
        self.entry = entry
        self._executor = ThreadPoolExecutor(max_workers=1)
        self._last_done = 0

    async def load(self, weights: Path | None) -> None:
        pass

    async def work(self, units: int) -> int:
        """`units` units of 10 ms each; returns how many were done."""
        return await run_stoppable(self._executor, lambda stop: self._work(units, stop))

    def _work(self, units: int, stop: StopFlag) -> int:
        self._last_done = 0
        for _ in range(units):
            stop.check()
            threading.Event().wait(0.01)
            self._last_done += 1
        return self._last_done

    async def last_done(self) -> int:
        return self._last_done

    def health(self) -> RunnerHealth:
        return RunnerHealth(status=self.entry.status)

    async def close(self) -> None:
        self._executor.shutdown(wait=True)
