"""What the retention purge removes and what it keeps, on the services the app builds (SQLite and
PostgreSQL): expired files with their bytes (a running batch's input kept), finished videos with
their MP4s (unfinished ones and unsettled ones kept), traces with all their spans, prompt samples,
finished webhook deliveries with their attempts; fresh rows of every kind stay, and audit
records are never purged however old."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from sqlalchemy import Table, func, insert, select, update

from batchin.config import Settings
from batchin.core.clock import month_of, utcnow
from batchin.protocol.accounts import UserCreated
from batchin.protocol.files import VIDEO_OUTPUT
from batchin.services import Services
from batchin.store.tables import (
    files,
    prompt_samples,
    reservations,
    trace_call_spans,
    trace_spans,
    trace_summaries,
    vaas_records,
    video_jobs,
    webhook_attempts,
    webhook_deliveries,
)
from tests.batch_fixtures import batch_services as _batch_services
from tests.batch_fixtures import jsonl_line, wait_for
from tests.conftest import MakeUser, bearer

OLD = 400  # days: past every default retention


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    # Batch workers stopped: a test that needs a batch to run starts them.
    async with _batch_services(settings, start=False, retention_purge_batch_rows=2) as built:
        yield built


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user(credit_cents=1_000)


async def age(services: Services, table: Table, column: str, days: float, *where: Any) -> None:
    async with services.database.write() as conn:
        await conn.execute(update(table).where(*where).values({column: utcnow() - timedelta(days=days)}))


async def count(services: Services, table: Table, *where: Any) -> int:
    async with services.database.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)


async def purge(services: Services) -> dict[str, int]:
    stats = await services.retention.run_now()
    assert stats is not None
    return stats.purged


def stored_names(services: Services, user: UserCreated) -> set[str]:
    """The ids of the files on disk (each named `<file id>-<name>`)."""
    folder = services.settings.data_dir / "files" / user.id
    return {"-".join(path.name.split("-")[:2]) for path in folder.iterdir()}


async def chat(client: httpx2.AsyncClient, user: UserCreated, system: str) -> httpx2.Response:
    body = {
        "model": "batch-chat",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": "hi"}],
        "metadata": {"prompt_registry": "retention"},
    }
    response = await client.post("/v1/chat/completions", json=body, headers=bearer(user.api_key))
    assert response.status_code == 200, response.text
    return response


# --- files ---------------------------------------------------------------------------------------


async def test_expired_files_go_with_their_bytes_and_fresh_ones_stay(
    services: Services, user: UserCreated
) -> None:
    old = [
        await services.files.store(
            user.id, b"x" * 10, filename=f"old{i}.png", purpose="image_output", content_type="image/png"
        )
        for i in range(5)  # more than one batch of 2 rows
    ]
    fresh = await services.files.store(
        user.id, b"y" * 7, filename="fresh.png", purpose="image_output", content_type="image/png"
    )
    await age(services, files, "created_at", 31, files.c.id.in_([f.id for f in old]))

    purged = await purge(services)

    assert purged["files"] == 5
    assert await count(services, files) == 1
    assert stored_names(services, user) == {fresh.id}
    assert await services.files.quota.used(user.id) == 7  # the quota counts only what is left
    assert (await services.files.get(user.id, fresh.id)).bytes == 7


async def test_a_running_batch_keeps_its_input_file_until_it_ends(
    services: Services, client: httpx2.AsyncClient, user: UserCreated
) -> None:
    data = b"".join(json.dumps(jsonl_line(f"r{i}")).encode() + b"\n" for i in range(2))
    uploaded = await client.post(
        "/v1/files",
        files={"file": ("in.jsonl", data, "application/jsonl")},
        data={"purpose": "batch"},
        headers=bearer(user.api_key),
    )
    input_id = uploaded.json()["id"]
    created = await client.post(
        "/v1/batches",
        json={"input_file_id": input_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        headers=bearer(user.api_key),
    )
    assert created.status_code == 200, created.text
    batch_id = created.json()["id"]
    await age(services, files, "created_at", OLD, files.c.id == input_id)

    assert (await purge(services))["files"] == 0  # validating: the worker has not even read it yet
    await services.batches.start()
    finished = await wait_for(services, user, batch_id)
    assert finished.status == "completed"
    output_id = finished.output_file_id
    assert (await purge(services))["files"] == 1  # ended: the input ages like any file

    assert stored_names(services, user) == {output_id}
    owner = bearer(user.api_key)
    assert (await client.get(f"/v1/files/{input_id}", headers=owner)).status_code == 404
    assert (await client.get(f"/v1/files/{output_id}/content", headers=owner)).status_code == 200


# --- videos --------------------------------------------------------------------------------------


async def video_job(
    services: Services, user: UserCreated, status: str, *, days_old: float, reservation: str = "settled"
) -> tuple[str, str | None]:
    """A job row as the video worker leaves it (finished ones with their stored MP4)."""
    finished = status in ("completed", "failed", "deleted")
    file_id = None
    if status == "completed":
        mp4 = await services.files.store(
            user.id, b"\x00" * 32, filename="v.mp4", purpose=VIDEO_OUTPUT, content_type="video/mp4"
        )
        file_id = mp4.id
    when = utcnow() - timedelta(days=days_old)
    job_id, reservation_id = f"video_{uuid.uuid4().hex[:24]}", str(uuid.uuid4())
    async with services.database.write() as conn:
        await conn.execute(
            insert(reservations).values(
                id=reservation_id,
                user_id=user.id,
                key_id=None,
                month=month_of(when),
                amount_units=0,
                status=reservation,
                created_at=when,
            )
        )
        await conn.execute(
            insert(video_jobs).values(
                id=job_id,
                user_id=user.id,
                request_id="req_test",
                model="tiny-random-video",
                prompt="a fox",
                seconds=1,
                size="64x64",
                status=status,
                progress=100 if finished else 0,
                reservation_id=reservation_id,
                file_id=file_id,
                attempts=1,
                created_at=when,
                completed_at=when if finished else None,
            )
        )
    return job_id, file_id


async def test_finished_videos_go_with_their_mp4_and_unfinished_ones_stay(
    services: Services, user: UserCreated
) -> None:
    for status in ("completed", "failed", "deleted"):
        await video_job(services, user, status, days_old=8)
    kept = [
        await video_job(services, user, "completed", days_old=1),  # within the 7 days
        await video_job(services, user, "queued", days_old=OLD),  # not done: never purged
        await video_job(services, user, "in_progress", days_old=OLD),
        await video_job(services, user, "completed", days_old=OLD, reservation="held"),  # unsettled
    ]

    assert (await purge(services))["videos"] == 3

    async with services.database.read() as conn:
        left = set((await conn.execute(select(video_jobs.c.id))).scalars())
        left_files = set((await conn.execute(select(files.c.id))).scalars())
    assert left == {job_id for job_id, _ in kept}
    assert left_files == {file_id for _, file_id in kept if file_id}
    assert stored_names(services, user) == left_files
    assert await services.files.quota.used(user.id) == 32 * 2


# --- traces, prompt samples, webhooks, audit -----------------------------------------------------


async def test_expired_traces_go_with_all_their_spans(
    services: Services, client: httpx2.AsyncClient, user: UserCreated
) -> None:
    old = (await chat(client, user, "You are old.")).headers["traceparent"].split("-")[1]
    fresh = (await chat(client, user, "You are fresh.")).headers["traceparent"].split("-")[1]
    sent = await client.post("/v1/otlp/traces", json=otlp_span(old), headers=bearer(user.api_key))
    assert sent.status_code == 200, sent.text
    await services.traces.flush()
    async with services.database.read() as conn:  # the call's spans packed, the sent one a row
        packed = await conn.scalar(
            select(trace_call_spans.c.span_count).where(trace_call_spans.c.trace_id == old)
        )
    assert int(packed or 0) > 1
    assert await count(services, trace_spans, trace_spans.c.trace_id == old) == 1
    await age(services, trace_summaries, "created_at", 31, trace_summaries.c.trace_id == old)

    assert (await purge(services))["traces"] == 1

    async with services.database.read() as conn:
        assert set((await conn.execute(select(trace_summaries.c.trace_id))).scalars()) == {fresh}
        assert set((await conn.execute(select(trace_call_spans.c.trace_id))).scalars()) == {fresh}
        assert set((await conn.execute(select(trace_spans.c.trace_id))).scalars()) == set()
    response = await client.get(f"/v1/traces/{old}", headers=bearer(user.api_key))
    assert response.status_code == 404


def otlp_span(trace_id: str) -> dict[str, Any]:
    span = {
        "traceId": trace_id,
        "spanId": "00000000000000aa",
        "name": "agent step",
        "kind": 1,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000001000000000",
    }
    return {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}


async def test_expired_prompt_samples_go(
    services: Services, client: httpx2.AsyncClient, user: UserCreated
) -> None:
    # Conversations are sampled only for a registry whose owner opted in to experiments.
    opted_in = await client.patch(
        "/v1/prompts/retention", json={"experiments_enabled": True}, headers=bearer(user.api_key)
    )
    assert opted_in.status_code == 200, opted_in.text
    await chat(client, user, "You are old.")
    await services.prompts.recorder.flush()
    await age(services, prompt_samples, "created_at", 31)
    await chat(client, user, "You are fresh.")
    await services.prompts.recorder.flush()
    assert await count(services, prompt_samples) == 2

    assert (await purge(services))["prompt_samples"] == 1
    assert await count(services, prompt_samples) == 1
    assert (
        await count(services, prompt_samples, prompt_samples.c.created_at < utcnow() - timedelta(days=1)) == 0
    )


async def delivery(services: Services, user: UserCreated, status: str, *, days_old: float) -> str:
    delivery_id = f"msg_{uuid.uuid4().hex}"
    when = utcnow() - timedelta(days=days_old)
    async with services.database.write() as conn:
        await conn.execute(
            insert(webhook_deliveries).values(
                id=delivery_id,
                user_id=user.id,
                subject_id=str(uuid.uuid4()),
                event_type="batch.completed",
                url="https://example.com/hook",
                payload="{}",
                status=status,
                attempts=2,
                next_attempt_at=None if status in ("delivered", "failed") else when,
                created_at=when,
                completed_at=when if status in ("delivered", "failed") else None,
            )
        )
        for attempt in (1, 2):
            await conn.execute(
                insert(webhook_attempts).values(
                    delivery_id=delivery_id,
                    attempt=attempt,
                    attempted_at=when,
                    duration_ms=5,
                    status_code=500,
                )
            )
    return delivery_id


async def test_finished_webhook_deliveries_go_with_their_attempts_and_pending_ones_stay(
    services: Services, user: UserCreated
) -> None:
    await delivery(services, user, "delivered", days_old=31)
    await delivery(services, user, "failed", days_old=31)
    kept = {
        await delivery(services, user, "delivered", days_old=1),
        await delivery(services, user, "pending", days_old=OLD),
        await delivery(services, user, "sending", days_old=OLD),
    }

    assert (await purge(services))["webhooks"] == 2

    async with services.database.read() as conn:
        assert set((await conn.execute(select(webhook_deliveries.c.id))).scalars()) == kept
        assert set((await conn.execute(select(webhook_attempts.c.delivery_id))).scalars()) == kept


async def test_audit_records_are_never_purged(
    services: Services, client: httpx2.AsyncClient, user: UserCreated
) -> None:
    record_ids = [(await chat(client, user, f"You are {n}.")).headers["X-VaaS-Record-Id"] for n in range(3)]
    await age(services, vaas_records, "created_at", 10 * 365)

    stats = await services.retention.run_now()

    assert stats is not None
    assert "audit" not in stats.purged
    assert stats.sizes.rows["vaas_records"] == 3
    assert await count(services, vaas_records) == 3
    for record_id in record_ids:
        verified = await client.get(f"/v1/vaas/{record_id}/verify")
        assert verified.status_code == 200, verified.text
        assert verified.json()["valid"] is True


async def test_a_kind_kept_for_ever_is_only_measured(settings: Settings, make_user: MakeUser) -> None:
    async with _batch_services(settings, start=False, file_retention_days=0) as services:
        user = await make_user()
        stored = await services.files.store(
            user.id, b"z" * 3, filename="a.png", purpose="image_output", content_type="image/png"
        )
        await age(services, files, "created_at", OLD)

        stats = await services.retention.run_now()

        assert stats is not None
        assert "files" not in stats.purged
        assert stats.sizes.file_bytes == {"image_output": 3}
        assert (await services.files.get(user.id, stored.id)).expires_at is None
