"""What the retention purge (core/retention.py) removes of media: stored files older than
BATCHIN_FILE_RETENTION_DAYS, and finished video jobs older than BATCHIN_VIDEO_RETENTION_DAYS with
their MP4s.

Rules that keep live work whole:
- a file a caller names as `held` (the input of a batch that has not ended: core/batches/retention.py)
  is kept until that ends, then ages like any file;
- an MP4 belongs to its video job and goes with it, never on its own (purpose video_output is
  skipped here), so a completed job never points at a purged file;
- a queued or running video job is never purged, nor a finished one whose reservation is still
  held (the video worker's recovery settles it first); a job ages from when it finished.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, exists, func, select

from batchin.core.media.files import FileService
from batchin.core.retention import StoreSizes
from batchin.protocol.files import VIDEO_OUTPUT
from batchin.store.database import Database
from batchin.store.tables import files, reservations, video_jobs

__all__ = ["FilePurger", "VideoPurger"]

_FINISHED = ("completed", "failed", "deleted")


class FilePurger:
    kind = "files"

    def __init__(self, database: Database, service: FileService, held: Sequence[Select[Any]] = ()) -> None:
        self._db = database
        self._files = service
        self._held = tuple(held)  # each selects file ids still in use

    async def purge(self, before: datetime, limit: int) -> int:
        query = select(files.c.id).where(files.c.created_at < before, files.c.purpose != VIDEO_OUTPUT)
        for in_use in self._held:
            query = query.where(files.c.id.not_in(in_use))
        async with self._db.read() as conn:
            ids = (await conn.execute(query.order_by(files.c.created_at).limit(limit))).scalars().all()
        return await self._files.delete_ids(ids)

    async def measure(self) -> StoreSizes:
        query = select(files.c.purpose, func.count(), func.coalesce(func.sum(files.c.bytes), 0)).group_by(
            files.c.purpose
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return StoreSizes(
            rows={"files": sum(int(count) for _, count, _ in rows)},
            files={purpose: int(count) for purpose, count, _ in rows},
            file_bytes={purpose: int(size) for purpose, _, size in rows},
        )


class VideoPurger:
    kind = "videos"

    def __init__(self, database: Database, service: FileService) -> None:
        self._db = database
        self._files = service

    async def purge(self, before: datetime, limit: int) -> int:
        finished_at = func.coalesce(video_jobs.c.completed_at, video_jobs.c.created_at)
        held = exists().where(
            reservations.c.id == video_jobs.c.reservation_id, reservations.c.status == "held"
        )
        query = (
            select(video_jobs.c.id, video_jobs.c.file_id)
            .where(video_jobs.c.status.in_(_FINISHED), finished_at < before, ~held)
            .order_by(finished_at)
            .limit(limit)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return 0
        # The MP4s first: a crash between the two leaves jobs the next run finishes, never files
        # nothing points at.
        await self._files.delete_ids([row.file_id for row in rows if row.file_id is not None])
        async with self._db.write() as conn:
            removed = await conn.execute(
                delete(video_jobs).where(
                    video_jobs.c.id.in_([row.id for row in rows]), video_jobs.c.status.in_(_FINISHED)
                )
            )
        return int(removed.rowcount)

    async def measure(self) -> StoreSizes:
        async with self._db.read() as conn:
            count = await conn.scalar(select(func.count()).select_from(video_jobs))
        return StoreSizes(rows={"video_jobs": int(count or 0)})
