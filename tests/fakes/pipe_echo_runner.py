"""An engine that answers what it is given, for tests of the worker pipe itself (large messages)."""

from __future__ import annotations

from pathlib import Path

from batchin.models.base import RunnerHealth
from batchin.models.catalog import CatalogEntry


class EchoRunner:
    def __init__(self, entry: CatalogEntry) -> None:
        self.entry = entry

    async def load(self, weights: Path | None) -> None:
        pass

    async def echo(self, data: bytes) -> bytes:
        return data[::-1]

    def health(self) -> RunnerHealth:
        return RunnerHealth(status=self.entry.status)

    async def close(self) -> None:
        pass
