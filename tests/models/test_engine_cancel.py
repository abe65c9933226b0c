"""A cancelled call crosses the worker pipe and stops the engine's thread (models/stoppable.py): the
worker reports it stopped, the engine did a sliver of the work asked, and the next call runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from batchin.models.catalog import parse_catalog
from batchin.models.hosted import HostedRunner
from batchin.models.registry import ModelRegistry
from tests.text_fixtures import eventually

pytestmark = pytest.mark.slow

CATALOG = """
[models.units]
kind = ["embedding"]
engine = "units"
licence = "MIT"
status = "always_on"
pricing = { input_per_1m = 1 }
"""

FOREVER = 100_000  # units of 10 ms: some 17 minutes of work


class HostedUnits(HostedRunner):
    async def work(self, units: int) -> int:
        done: int = await self._call("work", units)
        return done

    async def last_done(self) -> int:
        done: int = await self._call("last_done")
        return done


@pytest.fixture
async def runner() -> AsyncIterator[HostedUnits]:
    registry = ModelRegistry(
        parse_catalog(CATALOG, source="test"),
        engines={"units": "tests.fakes.stoppable_runner:UnitsRunner"},
        hosted={"units": "tests.models.test_engine_cancel:HostedUnits"},
    )
    await registry.start()
    try:
        hosted = await registry.runner("units")
        assert isinstance(hosted, HostedUnits)
        yield hosted
    finally:
        await registry.close()


async def test_a_cancelled_call_stops_the_engine_in_the_worker(runner: HostedUnits) -> None:
    worker = runner.worker
    assert worker is not None
    call = asyncio.ensure_future(runner.work(FOREVER))
    await eventually(lambda: worker.in_flight == 1, timeout=60)
    await asyncio.sleep(0.2)  # a few units done
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert worker.in_flight == 1  # cancelled here, still stopping there
    await eventually(lambda: worker.in_flight == 0, timeout=60)
    assert worker.calls_stopped == 1
    assert 0 < await runner.last_done() < FOREVER
    assert await runner.work(3) == 3  # the engine is free for the next call
