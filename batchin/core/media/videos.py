"""Video generation as durable jobs: every job is a row in `video_jobs`, so a restart loses nothing.

    submit   validate → flow policy → reserve the price of the requested seconds → row `queued`
    worker   claims the oldest queued row atomically → `in_progress` (progress 0-100, heartbeat)
             → MP4 stored as a file → `completed` → settle; or `failed` → release
    delete   hides the row (`deleted`); a job not yet completed has its reservation released

A caller whose stored files already fill their storage quota is refused at submit (413
storage_quota_exceeded, nothing reserved); an MP4 that turns out not to fit fails its job with that
code, its reservation released. Finished jobs and their MP4s are purged after
BATCHIN_VIDEO_RETENTION_DAYS (retention.py); queued and running jobs never are.

The reservation id lives on the row. Ledger closes are idempotent (a reservation settles or
releases once), and the worker's recovery pass closes any reservation a crash left open for a
finished row, so each job is billed exactly once across restarts. The worker is in video_worker.py.

The row also keeps the submitting call's trace context and run id: the job's trace and receipt join
that call's. Once completed, the job names its audit record (`record_id`), and reading it or its MP4
(`retrieve`, `content`) gives the receipt headers an inference response carries: that call's
`traceparent`, `X-BatchIn-Run-Id` and `X-BatchIn-Prompt-Version`, and the record's X-VaaS-*.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from batchin.config import Settings
from batchin.core.billing.ledger import LedgerService
from batchin.core.billing.money import cost_per_unit
from batchin.core.clock import epoch_seconds, utcnow
from batchin.core.context import CallContext
from batchin.core.media.files import FileContent, FileService
from batchin.core.media.links import LinkSigner
from batchin.core.media.video_worker import VideoWorker, load_reservation
from batchin.core.serving.admission import AdmissionController
from batchin.core.serving.flow import FlowPolicy
from batchin.core.serving.model_lookup import prices_for, usable_model
from batchin.core.serving.served_calls import ServedCalls
from batchin.errors import InvalidRequest, NotFound
from batchin.models.registry import ModelRegistry
from batchin.protocol.images import parse_size
from batchin.protocol.videos import Video, VideoCreateRequest, VideoDeleted, VideoError, VideoList
from batchin.store.database import Database
from batchin.store.tables import video_jobs

__all__ = ["VideoService"]

# Statuses a caller can see; "deleted" rows are kept only for billing recovery.
_VISIBLE = ("queued", "in_progress", "completed", "failed")


class VideoService:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        registry: ModelRegistry,
        ledger: LedgerService,
        flow: FlowPolicy,
        admission: AdmissionController,
        files: FileService,
        links: LinkSigner,
        served: ServedCalls,
    ) -> None:
        self._settings = settings
        self._db = database
        self._registry = registry
        self._ledger = ledger
        self._flow = flow
        self._files = files
        self._links = links
        self._served = served
        self.worker = VideoWorker(settings, database, registry, ledger, admission, files, served)

    # -- lifecycle (the app's lifespan calls these) --------------------------------------------

    async def start(self) -> None:
        await self.worker.start()

    async def stop(self) -> None:
        await self.worker.stop()

    # -- operations ------------------------------------------------------------------------------

    # `base`, here and below: the base URL the caller reached us at, for output_url (None: the one
    # recorded when the job was created, else the server's own; see links.py).

    async def submit(
        self, ctx: CallContext, request: VideoCreateRequest, *, base: str | None = None
    ) -> Video:
        entry = usable_model(self._registry, request.model, "video", ctx.principal)
        seconds, size = request.job_seconds(), request.job_size()
        width, height = parse_size(size)
        if width % 2 or height % 2:
            raise InvalidRequest(f"H.264 needs even sides; size {size!r} has an odd one.", param="size")
        await self._files.quota.require_room(ctx.principal.user_id)  # the MP4 will need room
        await self._flow.admit(ctx, entry)  # region and lane limits; the worker holds the slot
        price = prices_for(entry, ctx.principal).per_video_second or 0
        # The job row holds it (the sweeper spares live jobs; the video worker recovers its own).
        reservation = await self._ledger.reserve(
            ctx.principal, cost_per_unit(seconds, price), held_here=False
        )
        job_id = f"video_{secrets.token_hex(12)}"
        row: dict[str, Any] = {
            "id": job_id,
            "user_id": ctx.principal.user_id,
            "key_id": ctx.principal.key_id,
            "request_id": ctx.request_id,
            "model": entry.id,
            "prompt": request.prompt,
            "seconds": seconds,
            "size": size,
            "seed": request.seed if request.seed is not None else secrets.randbelow(2**31),
            "status": "queued",
            "progress": 0,
            "reservation_id": reservation.id,
            "attempts": 0,
            "created_at": utcnow(),
            "origin": base,
            "traceparent": ctx.trace.traceparent,
            "parent_span_id": ctx.trace.parent_span_id,
            "run_id": ctx.run_id,
            "prompt_version": ctx.prompt_version,
            "region": ctx.region,
        }
        try:
            async with self._db.write() as conn:
                await conn.execute(insert(video_jobs).values(**row))
        except BaseException:
            await asyncio.shield(self._ledger.release(reservation))
            raise
        self.worker.wake()
        return self._video(row, base)

    async def get(self, user_id: str, video_id: str, *, base: str | None = None) -> Video:
        return self._video(await self._row(user_id, video_id), base)

    async def retrieve(
        self, user_id: str, video_id: str, *, base: str | None = None
    ) -> tuple[Video, dict[str, str]]:
        """The job and, once it is completed, its receipt headers (else none)."""
        row = await self._row(user_id, video_id)
        return self._video(row, base), await self._receipt(row)

    async def list(
        self,
        user_id: str,
        *,
        limit: int = 20,
        order: str = "desc",
        after: str | None = None,
        base: str | None = None,
    ) -> VideoList:
        if not 1 <= limit <= 100:
            raise InvalidRequest("limit must be between 1 and 100.", param="limit")
        if order not in ("asc", "desc"):
            raise InvalidRequest("order must be 'asc' or 'desc'.", param="order")
        query = select(video_jobs).where(video_jobs.c.user_id == user_id, video_jobs.c.status.in_(_VISIBLE))
        newest_first = order == "desc"
        if after is not None:
            anchor = await self._row(user_id, after)
            edge = (
                video_jobs.c.created_at < anchor["created_at"]
                if newest_first
                else (video_jobs.c.created_at > anchor["created_at"])
            )
            query = query.where(edge)
        keys = (video_jobs.c.created_at, video_jobs.c.id)
        query = query.order_by(*(k.desc() if newest_first else k.asc() for k in keys)).limit(limit + 1)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).mappings().all()
        videos = [self._video(dict(r), base) for r in rows[:limit]]
        return VideoList(
            data=videos,
            first_id=videos[0].id if videos else None,
            last_id=videos[-1].id if videos else None,
            has_more=len(rows) > limit,
        )

    async def content(
        self, user_id: str, video_id: str, variant: str = "video"
    ) -> tuple[FileContent, dict[str, str]]:
        """The finished MP4 and the receipt headers of the job that made it."""
        if variant != "video":
            raise InvalidRequest("Only variant 'video' (the MP4) is available.", param="variant")
        row = await self._row(user_id, video_id)
        if row["status"] != "completed" or row["file_id"] is None:
            raise InvalidRequest(
                f"Video '{video_id}' is {row['status']}; its content exists once it is completed.",
                param="video_id",
            )
        return await self._files.content(user_id, row["file_id"]), await self._receipt(row)

    async def linked_output(self, video_id: str) -> FileContent:
        """The MP4 a signed output_url names (the link, not a key, says who may read it). Until
        the job completes: 404 saying so, with Retry-After, so a player or script can wait."""
        async with self._db.read() as conn:
            query = select(video_jobs).where(video_jobs.c.id == video_id, video_jobs.c.status.in_(_VISIBLE))
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            raise NotFound(f"No such video: '{video_id}'.", param="video_id")
        if row["status"] in ("queued", "in_progress"):
            raise NotFound(
                f"Video '{video_id}' is not ready: it is {row['status']} ({row['progress']}%). This link "
                "opens once the job is completed.",
                param="video_id",
                headers={"Retry-After": "5"},
            )
        if row["status"] != "completed" or row["file_id"] is None:
            raise NotFound(f"Video '{video_id}' failed; it has no output.", param="video_id")
        return await self._files.content(row["user_id"], row["file_id"])

    async def delete(self, user_id: str, video_id: str) -> VideoDeleted:
        async with self._db.write() as conn:
            row = await self._locked_row(conn, user_id, video_id)
            await conn.execute(
                update(video_jobs).where(video_jobs.c.id == video_id).values(status="deleted", worker_id=None)
            )
        if row["file_id"] is not None:
            await self._files.delete(user_id, row["file_id"])
        if row["status"] in ("queued", "in_progress"):
            # Nothing was delivered: the whole reservation goes back (a running worker discards its
            # output when it finds the row no longer its own).
            reservation = await load_reservation(self._db, row["reservation_id"])
            if reservation is not None:
                await self._ledger.release(reservation)
        return VideoDeleted(id=video_id)

    async def _receipt(self, row: dict[str, Any]) -> dict[str, str]:
        record_id = row.get("record_id")
        if row["status"] != "completed" or record_id is None:
            return {}
        headers = await self._served.receipt_headers(record_id)
        if row.get("traceparent"):  # the submitting call's, which the record names
            headers |= {
                "traceparent": row["traceparent"],
                "X-BatchIn-Run-Id": row["run_id"],
                "X-BatchIn-Prompt-Version": row["prompt_version"],
            }
        return headers

    # -- rows ------------------------------------------------------------------------------------

    async def _row(self, user_id: str, video_id: str) -> dict[str, Any]:
        async with self._db.read() as conn:
            return await self._locked_row(conn, user_id, video_id)

    @staticmethod
    async def _locked_row(conn: Any, user_id: str, video_id: str) -> dict[str, Any]:
        query = select(video_jobs).where(
            video_jobs.c.id == video_id, video_jobs.c.user_id == user_id, video_jobs.c.status.in_(_VISIBLE)
        )
        row = (await conn.execute(query)).mappings().first()
        if row is None:
            raise NotFound(f"No such video: '{video_id}'.", param="video_id")
        return dict(row)

    def _video(self, row: dict[str, Any], base: str | None) -> Video:
        error = None
        if row["status"] == "failed":
            error = VideoError(code=row.get("error_code") or "failed", message=row.get("error_message") or "")
        file_id = row.get("file_id")
        # The seed shows output_url from `queued`: the link names the job, and opens once it is done.
        output_url = None
        if row["status"] in ("queued", "in_progress", "completed"):
            output_url = self._links.url(row["id"], base or row.get("origin"))
        return Video(
            id=row["id"],
            status=row["status"],
            progress=row["progress"],
            model=row["model"],
            prompt=row["prompt"],
            seconds=str(row["seconds"]),
            size=row["size"],
            created_at=_epoch(row["created_at"]) or 0,
            completed_at=_epoch(row.get("completed_at")),
            error=error,
            duration_seconds=row["seconds"],
            output_url=output_url,
            file_id=file_id if row["status"] == "completed" else None,
            record_id=row.get("record_id") if row["status"] == "completed" else None,
        )


def _epoch(moment: datetime | None) -> int | None:
    return None if moment is None else int(epoch_seconds(moment))
