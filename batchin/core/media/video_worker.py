"""The video job worker: started and stopped with the app (VideoService.start/stop).

One job at a time per process, claimed atomically (SQLite: the write lock of BEGIN IMMEDIATE;
PostgreSQL: FOR UPDATE SKIP LOCKED), so no job runs in two places. While it runs, a heartbeat
writes progress; a job whose heartbeat has been silent for `video_job_stale_seconds` belonged to a
dead process and is queued again. A clean stop queues its own running job again at once. Every
finish is conditional on the row still being this worker's `in_progress` job, so a job deleted or
re-queued meanwhile is discarded rather than completed twice.

Each job ends like any served call (serving/served_calls.py), under the trace of the call that
submitted it: a completed job gets a signed receipt over its prompt and its MP4 (the record id is
written on the row as it becomes `completed`) and every finished job a trace (admission: submitted →
engine slot; engine: denoising; encode: the MP4 encoded and stored). A job handed back at shutdown
leaves no trace: it runs again under the same ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from batchin.config import Settings
from batchin.core.billing.ledger import LedgerService
from batchin.core.billing.ledger_records import Reservation, UsageRecord
from batchin.core.billing.money import cost_per_unit
from batchin.core.clock import epoch_seconds, utcnow
from batchin.core.context import CallContext, Principal
from batchin.core.media.files import FileService
from batchin.core.serving.admission import AdmissionController, Priority
from batchin.core.serving.flow import SHARED_LANE
from batchin.core.serving.served_calls import ServedCall, ServedCalls
from batchin.core.trace_context import restore_trace
from batchin.core.worker import DurableWorker, new_worker_id
from batchin.errors import BatchInError
from batchin.models.registry import ModelRegistry
from batchin.models.video import VideoParams, VideoRunner
from batchin.protocol.currency import DEFAULT_CURRENCY
from batchin.protocol.files import VIDEO_OUTPUT
from batchin.protocol.images import parse_size
from batchin.store.claiming import skip_locked
from batchin.store.database import Database
from batchin.store.tables import reservations, users, video_jobs

__all__ = ["VideoWorker", "job_context", "load_reservation"]

log = logging.getLogger("batchin.videos")

MAX_ATTEMPTS = 3  # a job that kills its worker this often is failed, not retried forever
_ENCODING_SHARE = 95  # progress reached when denoising ends; encoding and storing take the rest


class VideoWorker(DurableWorker[dict[str, Any]]):
    def __init__(
        self,
        settings: Settings,
        database: Database,
        registry: ModelRegistry,
        ledger: LedgerService,
        admission: AdmissionController,
        files: FileService,
        served: ServedCalls,
    ) -> None:
        super().__init__(
            name="video-worker", log=log, worker_id=new_worker_id(), poll_seconds=settings.video_poll_seconds
        )
        self._settings = settings
        self._db = database
        self._registry = registry
        self._ledger = ledger
        self._admission = admission
        self._files = files
        self._served = served
        self._progress: dict[str, int] = {}
        self._recover_due = 0.0  # time.monotonic() of the next look for dead workers' jobs

    async def stop(self) -> None:
        await super().stop()
        # A clean stop hands its running job back at once (a crash waits for the stale heartbeat).
        async with self._db.write() as conn:
            await conn.execute(
                update(video_jobs)
                .where(video_jobs.c.worker_id == self.worker_id, video_jobs.c.status == "in_progress")
                .values(status="queued", worker_id=None, progress=0)
            )

    # -- the loop (DurableWorker): one job at a time ---------------------------------------------

    async def _claim_items(self, limit: int) -> list[dict[str, Any]]:
        # A job turns stale only `video_job_stale_seconds` after its last heartbeat: looking twice in
        # that time (not at every claim) finds it soon enough, and costs an idle worker nothing.
        if time.monotonic() >= self._recover_due:
            await self.recover()
            self._recover_due = time.monotonic() + self._settings.video_job_stale_seconds / 2
        job = await self._claim()
        return [] if job is None else [job]

    async def _process(self, job: dict[str, Any]) -> None:
        try:
            await self._execute(job)
        except Exception:
            log.exception("video worker: job %s crashed the worker step", job["id"])

    async def recover(self) -> None:
        """Queue again jobs of dead workers; close reservations a crash left open for finished jobs."""
        stale_before = utcnow() - timedelta(seconds=self._settings.video_job_stale_seconds)
        async with self._db.write() as conn:
            await conn.execute(
                update(video_jobs)
                .where(video_jobs.c.status == "in_progress", video_jobs.c.heartbeat_at < stale_before)
                .values(status="queued", worker_id=None, progress=0)
            )
        query = (
            select(video_jobs)
            .join(reservations, reservations.c.id == video_jobs.c.reservation_id)
            .where(
                reservations.c.status == "held",
                video_jobs.c.status.in_(("completed", "failed", "deleted")),
            )
        )
        async with self._db.read() as conn:
            rows = [dict(r) for r in (await conn.execute(query)).mappings().all()]
        for row in rows:
            if row["status"] == "completed":
                await self._settle(row)
            else:
                await self._release(row)

    async def _claim(self) -> dict[str, Any] | None:
        now = utcnow()
        async with self._db.write() as conn:
            query = select(video_jobs).where(video_jobs.c.status == "queued")
            query = query.order_by(video_jobs.c.created_at, video_jobs.c.id).limit(1)
            query = skip_locked(query)
            row = (await conn.execute(query)).mappings().first()
            if row is None:
                return None
            claimed = await conn.execute(
                update(video_jobs)
                .where(video_jobs.c.id == row["id"], video_jobs.c.status == "queued")
                .values(
                    status="in_progress",
                    worker_id=self.worker_id,
                    started_at=now,
                    heartbeat_at=now,
                    progress=0,
                    attempts=video_jobs.c.attempts + 1,
                )
            )
            if claimed.rowcount != 1:
                return None
        return {**row, "attempts": row["attempts"] + 1}

    # -- one job ---------------------------------------------------------------------------------

    async def _execute(self, job: dict[str, Any]) -> None:
        if job["attempts"] > MAX_ATTEMPTS:
            await self._fail(job, "worker_lost", f"The job stopped its worker {MAX_ATTEMPTS} times.")
            return
        started = time.perf_counter()
        self._progress[job["id"]] = 0
        beat = asyncio.get_running_loop().create_task(self._heartbeat(job["id"]))
        try:
            async with self._served.call(
                job_context(job),
                model_id=job["model"],
                endpoint="videos",
                input=job["prompt"].encode("utf-8"),
                trace_cancelled=False,
            ) as served:
                mp4 = await self._render(job, served)
                completed = await self._complete(job, mp4, served)
        except asyncio.CancelledError:
            raise
        except BatchInError as exc:
            await self._fail(job, exc.code, exc.message)
            return
        except Exception as exc:
            log.exception("video job %s failed", job["id"])
            await self._fail(job, "generation_failed", f"{type(exc).__name__}: {exc}")
            return
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            self._progress.pop(job["id"], None)
        if completed:
            await self._settle(job, latency_ms=int((time.perf_counter() - started) * 1000))

    async def _render(self, job: dict[str, Any], served: ServedCall) -> bytes:
        entry = self._registry.entry(job["model"])
        runner = await self._registry.runner(job["model"])
        if not isinstance(runner, VideoRunner):
            raise TypeError(f"model {job['model']} has no video engine")
        width, height = parse_size(job["size"])
        params = VideoParams(job["prompt"], width, height, job["seconds"], job["seed"] or 0)
        pool = self._admission.pool(
            entry.id, lane=SHARED_LANE, max_concurrency=entry.max_concurrency, queue_size=entry.queue_size
        )
        job_id = job["id"]

        def progress(fraction: float) -> None:  # maybe on the engine's thread: plain stores only
            self._progress[job_id] = int(fraction * _ENCODING_SHARE)
            if fraction >= 1.0:  # denoised: encoding the MP4 follows
                served.engine_done()

        async with pool.slot(Priority.BATCH_HIGH):
            # Queued since it was submitted, possibly by another process: wall clock, not monotonic.
            served.admitted(max(0.0, time.time() - epoch_seconds(job["created_at"])))
            mp4 = await runner.generate(params, progress)
        if served.engine_done_at is None:  # a pipeline that reports no steps
            served.engine_done()
        return mp4

    async def _heartbeat(self, job_id: str) -> None:
        interval = min(1.0, self._settings.video_job_stale_seconds / 4)
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await self._mine(job_id, heartbeat_at=utcnow(), progress=self._progress.get(job_id, 0))

    async def _mine(self, job_id: str, **values: Any) -> bool:
        """Update the job only while it is still this worker's in_progress job."""
        async with self._db.write() as conn:
            result = await conn.execute(
                update(video_jobs)
                .where(
                    video_jobs.c.id == job_id,
                    video_jobs.c.worker_id == self.worker_id,
                    video_jobs.c.status == "in_progress",
                )
                .values(**values)
            )
        return bool(result.rowcount == 1)

    async def _complete(self, job: dict[str, Any], mp4: bytes, served: ServedCall) -> bool:
        """Store the MP4, sign its receipt, then mark the job completed naming both; False when the
        job is no longer this worker's (its output then belongs to nobody and is deleted)."""
        stored = await self._files.store(
            job["user_id"], mp4, filename=f"{job['id']}.mp4", purpose=VIDEO_OUTPUT, content_type="video/mp4"
        )
        seconds = job["seconds"]
        served.produced(mp4, units=float(seconds), unit="video_seconds")
        served.cost_units = cost_per_unit(seconds, await self._price(job))
        record_id = await self._served.seal(served)
        done = await self._mine(
            job["id"],
            status="completed",
            progress=100,
            file_id=stored.id,
            record_id=record_id,
            completed_at=utcnow(),
            worker_id=None,
        )
        if not done:  # deleted or handed to another worker meanwhile: this output is nobody's
            await self._files.delete(job["user_id"], stored.id)
        return done

    async def _fail(self, job: dict[str, Any], code: str, message: str) -> None:
        failed = await self._mine(
            job["id"],
            status="failed",
            error_code=code,
            error_message=message[:2000],
            completed_at=utcnow(),
            worker_id=None,
        )
        if failed:
            await self._release(job)

    async def _settle(self, job: dict[str, Any], latency_ms: int = 0) -> None:
        reservation = await load_reservation(self._db, job["reservation_id"])
        if reservation is None:
            return
        entry_price = await self._price(job)
        await self._ledger.settle(
            reservation,
            UsageRecord(
                request_id=job["request_id"],
                model=job["model"],
                endpoint="videos",
                cost_units=cost_per_unit(job["seconds"], entry_price),
                latency_ms=latency_ms,
                units=float(job["seconds"]),
                unit="video_seconds",
            ),
        )

    async def _release(self, job: dict[str, Any]) -> None:
        reservation = await load_reservation(self._db, job["reservation_id"])
        if reservation is not None:
            await self._ledger.release(reservation)

    async def _price(self, job: dict[str, Any]) -> Any:
        """The job's price per second in its owner's currency. The job's reservation caps the
        charge; a model since removed from the catalog (or its price in that currency) bills that."""
        async with self._db.read() as conn:
            currency = (
                await conn.execute(select(users.c.currency).where(users.c.id == job["user_id"]))
            ).scalar()
        try:
            prices = self._registry.entry(job["model"]).prices(currency or DEFAULT_CURRENCY)
        except BatchInError:
            prices = None
        return 10**6 if prices is None else prices.per_video_second or 0


def job_context(job: dict[str, Any]) -> CallContext:
    """The context of the call that submitted the job, as its receipt and trace name it: its owner,
    trace, run, prompt version and region. The principal authorises nothing here (no scopes)."""
    owner = Principal(
        user_id=job["user_id"],
        key_id=job["key_id"] or "",
        key_prefix="",
        rate_limit_rpm=0,
        monthly_budget_cents=None,
        scopes=frozenset(),
    )
    ctx = CallContext(
        principal=owner,
        request_id=job["request_id"],
        region=job.get("region"),
        trace=restore_trace(job.get("traceparent"), job.get("parent_span_id")),
        prompt_version=job.get("prompt_version") or "default",
        started_at=epoch_seconds(job["created_at"]),
    )
    if job.get("run_id"):
        ctx.run_id = job["run_id"]
    return ctx


async def load_reservation(database: Database, reservation_id: str) -> Reservation | None:
    async with database.read() as conn:
        row = (await conn.execute(select(reservations).where(reservations.c.id == reservation_id))).first()
    if row is None:
        return None
    return Reservation(row.id, row.user_id, row.key_id, row.month, row.amount_units)
