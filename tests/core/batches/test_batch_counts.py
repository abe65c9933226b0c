"""The live counts of a running batch (core/batches/counts.py): right, read once for any number of
polls within the freshness window (concurrent ones included), and read again after a cancel in this
process. The workers do not run: the tasks' statuses are written by the test."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import update

from batchin.core.batches import counts as live_counts
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from batchin.store.tables import batch_tasks, batches
from tests.batch_fixtures import CHAT, jsonl_line
from tests.core.batches.test_batch_files import submit_file, upload

START_WORKERS = False


async def running_file_batch(services: Services, user: UserCreated, statuses: list[str]) -> str:
    """A file batch in progress whose tasks have `statuses` (a `running` one held by another worker)."""
    stored = await upload(services, user, [jsonl_line(f"req-{i}") for i in range(len(statuses))])
    batch = await submit_file(services, user, stored.id)
    body = json.dumps(jsonl_line("x")["body"])
    await services.batches._store.insert(
        [
            (batch.id, i, f"req-{i}", "/v1/chat/completions", CHAT, body, 2, status, 0, 1, 0)
            for i, status in enumerate(statuses)
        ]
    )
    async with services.database.write() as conn:
        await conn.execute(
            update(batches)
            .where(batches.c.id == batch.id)
            .values(status="in_progress", total_tasks=len(statuses))
        )
        await conn.execute(
            update(batch_tasks)
            .where(batch_tasks.c.batch_id == batch.id, batch_tasks.c.status == "running")
            .values(claimed_by="other-host:1:live", lease_until=2**62)
        )
    return str(batch.id)


async def test_polls_share_one_count_until_a_cancel_here(
    services: Services, user: UserCreated, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live_counts, "_SECONDS_PER_TASK", 3600.0)  # no count goes stale in this test
    monkeypatch.setattr(live_counts, "_MAX_FRESH_SECONDS", 3600.0)
    store = services.batches._store
    reads: list[list[str]] = []
    counted = store.finished_counts

    async def counting(batch_ids: Any) -> dict[str, dict[str, int]]:
        reads.append(list(batch_ids))
        return await counted(batch_ids)

    monkeypatch.setattr(store, "finished_counts", counting)
    batch_id = await running_file_batch(
        services, user, ["completed", "failed", "running", "running", "pending"]
    )

    polls = await asyncio.gather(*(services.batches.get(user.id, batch_id) for _ in range(5)))
    assert {(b.status, b.completed_tasks, b.failed_tasks) for b in polls} == {("in_progress", 1, 1)}
    async with services.database.write() as conn:  # a running task completes elsewhere
        await conn.execute(
            update(batch_tasks)
            .where(batch_tasks.c.batch_id == batch_id, batch_tasks.c.line == 2)
            .values(status="completed")
        )
    listed = await services.batches.list(user.id)
    assert reads == [[batch_id]]  # five concurrent polls and a list: one count
    assert (listed[0].id, listed[0].completed_tasks) == (batch_id, 1)  # within the window

    cancelling = await services.batches.cancel(user.id, batch_id)

    # Still running elsewhere: `cancelling`, counted again since the batch changed here.
    assert (cancelling.status, cancelling.completed_tasks, cancelling.failed_tasks) == ("cancelling", 2, 1)
    assert reads == [[batch_id], [batch_id]]
