"""The write-behind buffer counts what it loses and says so in the log, without flooding it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from batchin.core.write_behind import BufferStats, WriteBehind

log = logging.getLogger("tests.write_behind")


def buffer(written: list[list[int]], *, capacity: int, fail: bool = False) -> WriteBehind[int]:
    async def write(batch: list[int]) -> None:
        if fail:
            raise RuntimeError("store down")
        written.append(batch)

    return WriteBehind(write, capacity=capacity, batch=10, interval=3600, what="test items", log=log)


async def test_overflow_drops_the_oldest_and_counts_them(caplog: pytest.LogCaptureFixture) -> None:
    written: list[list[int]] = []
    items = buffer(written, capacity=2)
    caplog.set_level(logging.WARNING, logger=log.name)

    for i in range(7):  # no await between offers: the writer never gets a turn
        items.offer(i)

    assert items.stats() == BufferStats(pending=2, dropped=5, failed=0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # The 1st, 2nd and 4th drop are logged; the 3rd and 5th only counted.
    assert warnings == [
        "dropped test items (1 so far): the store is falling behind",
        "dropped test items (2 so far): the store is falling behind",
        "dropped test items (4 so far): the store is falling behind",
    ]
    await items.close()
    assert written == [[5, 6]]


async def test_a_refused_batch_is_counted_as_failed(caplog: pytest.LogCaptureFixture) -> None:
    items = buffer([], capacity=10, fail=True)
    caplog.set_level(logging.WARNING, logger=log.name)
    for i in range(3):
        items.offer(i)

    await items.flush()

    assert items.stats() == BufferStats(pending=0, dropped=0, failed=3)
    assert [r.getMessage() for r in caplog.records] == ["could not store 3 test items"]
    await items.close()


async def test_nothing_lost_nothing_logged(caplog: pytest.LogCaptureFixture) -> None:
    written: list[list[int]] = []
    items = buffer(written, capacity=10)
    caplog.set_level(logging.WARNING, logger=log.name)
    items.offer(1)
    await asyncio.sleep(0)
    await items.close()

    assert items.stats() == BufferStats(pending=0, dropped=0, failed=0)
    assert written == [[1]]
    assert caplog.records == []
