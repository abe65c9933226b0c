"""Video jobs are durable: a restart mid-job finishes the job once and bills it once; a dead
worker's job is queued again; reservations a crash left open are closed; a job is claimed once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from batchin.config import Settings
from batchin.core.clock import utcnow
from batchin.core.context import CallContext
from batchin.core.media.video_worker import VideoWorker
from batchin.core.serving.served_calls import ServedCalls
from batchin.models.registry import ModelRegistry
from batchin.protocol.accounts import UserCreated
from batchin.protocol.videos import VideoCreateRequest
from batchin.services import Services
from batchin.store.tables import reservations, video_jobs
from tests.media_fixtures import (
    SLOW_VIDEO_MODEL,
    VIDEO_MODEL,
    VIDEO_SECOND_UNITS,
    media_registry,
    media_services,
)
from tests.text_fixtures import balance_units, logs_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
async def registry() -> ModelRegistry:
    return await media_registry()


async def submit(services: Services, user: UserCreated, model: str, seconds: int = 2) -> str:
    principal = await services.auth.authenticate(user.api_key)
    ctx = CallContext(principal=principal, request_id=f"req_{uuid.uuid4().hex}")
    request = VideoCreateRequest(model=model, prompt="a slow sunrise", seconds=str(seconds), size="64x64")
    return (await services.videos.submit(ctx, request)).id


async def until(
    services: Services, user: UserCreated, video_id: str, statuses: set[str], timeout: float = 120
) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = (await services.videos.get(user.id, video_id)).status
        if status in statuses:
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{video_id} still {status}")
        await asyncio.sleep(0.02)


async def settled(services: Services, user: UserCreated, *, count: int, timeout: float = 30) -> None:
    """The worker settles just after marking a job completed: wait for the usage logs."""
    deadline = asyncio.get_running_loop().time() + timeout
    while len(await logs_of(services, user)) < count:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the completed job was never billed")
        await asyncio.sleep(0.02)


async def job_row(services: Services, video_id: str) -> dict[str, object]:
    async with services.database.read() as conn:
        return dict(
            (await conn.execute(select(video_jobs).where(video_jobs.c.id == video_id))).mappings().one()
        )


async def test_restart_mid_job_completes_once_and_bills_once(
    settings: Settings, registry: ModelRegistry
) -> None:
    async with media_services(settings, registry, keep_data=True) as first:
        user = await first.accounts.create_user("durable@example.com", "Durable", 1_000)
        before = await balance_units(first, user)
        video_id = await submit(first, user, SLOW_VIDEO_MODEL, seconds=2)
        await until(first, user, video_id, {"in_progress"})
        await first.videos.stop()  # the server goes down mid-job
        assert (await first.videos.get(user.id, video_id)).status == "queued"
    async with media_services(settings, registry) as second:
        assert await until(second, user, video_id, {"completed", "failed"}) == "completed"
        await settled(second, user, count=1)
        await second.videos.worker.recover()
        row = await job_row(second, video_id)
        assert (row["attempts"], row["progress"]) == (2, 100)
        assert before - await balance_units(second, user) == 2 * VIDEO_SECOND_UNITS
        logs = await logs_of(second, user)
        assert [(log.endpoint, log.status) for log in logs] == [("videos", "succeeded")]


async def test_a_dead_workers_job_is_queued_again_and_finished(
    settings: Settings, registry: ModelRegistry
) -> None:
    async with media_services(settings, registry, worker=False, video_job_stale_seconds=0.5) as services:
        user = await services.accounts.create_user("crash@example.com", "Crash", 1_000)
        video_id = await submit(services, user, VIDEO_MODEL, seconds=1)
        async with services.database.write() as conn:  # as a crashed process leaves it
            await conn.execute(
                update(video_jobs)
                .where(video_jobs.c.id == video_id)
                .values(
                    status="in_progress",
                    worker_id="dead-host:1:00000000",
                    attempts=1,
                    progress=40,
                    heartbeat_at=utcnow() - timedelta(seconds=5),
                )
            )
        await services.videos.start()
        assert await until(services, user, video_id, {"completed", "failed"}) == "completed"
        assert (await job_row(services, video_id))["attempts"] == 2
        await settled(services, user, count=1)


async def test_recovery_closes_reservations_a_crash_left_open(
    settings: Settings, registry: ModelRegistry
) -> None:
    async with media_services(settings, registry, worker=False) as services:
        user = await services.accounts.create_user("open@example.com", "Open", 1_000)
        before = await balance_units(services, user)
        finished = await submit(services, user, VIDEO_MODEL, seconds=3)
        failed = await submit(services, user, VIDEO_MODEL, seconds=4)
        async with services.database.write() as conn:  # crashed after marking, before billing
            await conn.execute(
                update(video_jobs).where(video_jobs.c.id == finished).values(status="completed")
            )
            await conn.execute(update(video_jobs).where(video_jobs.c.id == failed).values(status="failed"))
        await services.videos.worker.recover()
        await services.videos.worker.recover()  # idempotent
        assert before - await balance_units(services, user) == 3 * VIDEO_SECOND_UNITS
        logs = await logs_of(services, user)
        assert [(log.units, log.unit) for log in logs] == [(3.0, "video_seconds")]
        async with services.database.read() as conn:
            statuses = (
                await conn.execute(select(reservations.c.status).order_by(reservations.c.amount_units))
            ).all()
        assert [s.status for s in statuses] == ["settled", "released"]


async def test_each_job_is_claimed_by_exactly_one_worker(settings: Settings, registry: ModelRegistry) -> None:
    async with media_services(settings, registry, worker=False) as services:
        user = await services.accounts.create_user("claims@example.com", "Claims", 1_000)
        ids = {await submit(services, user, VIDEO_MODEL, seconds=1) for _ in range(6)}
        workers = [
            VideoWorker(
                settings,
                services.database,
                registry,
                services.ledger,
                services.admission,
                services.files,
                ServedCalls(services.audit, services.traces),
            )
            for _ in range(3)
        ]
        claims = await asyncio.gather(*(w._claim() for w in workers for _ in range(4)))
        claimed = [job["id"] for job in claims if job is not None]
        assert sorted(claimed) == sorted(ids)
        for worker in workers:
            await worker.stop()  # hands the claimed jobs back
        assert {(await services.videos.get(user.id, i)).status for i in ids} == {"queued"}
