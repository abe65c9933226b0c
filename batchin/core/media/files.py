"""Stored files: bytes under BATCHIN_DATA_DIR/files/<user id>/, one row each in `files`.

Generated outputs (images asked for by URL, videos) are written here and served to their owner
only; anyone else, like a missing id, gets 404, so ids cannot be probed. A signed media link
(links.py) opens one file without a key. Uploads (purpose "batch")
share the table: `store()` takes bytes, `store_stream()` copies a file object a block at a time and
`store_path()` moves a finished file into place, so a large upload or a batch's result file never
sits in memory. Staging files live under files/.staging, on the same filesystem, so the final
step is a rename.

The bytes are written (to a temporary name, then renamed) before the row is inserted, so a row
never names a missing file; a crash between the two leaves an orphan file and no row.

Every stored byte counts against its user's storage quota (core/billing/storage_quota.py): a
write that cannot fit is refused (413 storage_quota_exceeded) before its bytes are written, and
the count moves in the same transaction as the rows, so a refusal that loses a race still leaves
nothing behind: its bytes are removed and no row is written. Several files stored together
(`store_all`: the n images of one call) are stored all or none. Batch result files are counted
but never refused (`enforce_quota=False`): their tasks are already paid for.

Files expire (`expires_at`) after BATCHIN_FILE_RETENTION_DAYS, video outputs after
BATCHIN_VIDEO_RETENTION_DAYS; the purge (media/retention.py) removes them.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import delete, insert, select

from batchin.core.billing.storage_quota import StorageQuota
from batchin.core.clock import utcnow
from batchin.errors import NotFound, PayloadTooLarge
from batchin.protocol.files import VIDEO_OUTPUT, FileDeleted, FileObject
from batchin.store.database import Database
from batchin.store.tables import files

__all__ = ["FileContent", "FileService", "NewFile", "new_file_id"]

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def new_file_id() -> str:
    return f"file-{secrets.token_hex(12)}"


@dataclass(frozen=True, slots=True)
class FileContent:
    path: Path
    content_type: str
    filename: str
    bytes: int


@dataclass(frozen=True, slots=True)
class NewFile:
    """Bytes to store, with what their row says about them."""

    data: bytes
    filename: str
    purpose: str
    content_type: str


@dataclass(frozen=True, slots=True)
class _Placed:
    """A file's row before it is inserted: where its bytes go and what it says."""

    id: str
    filename: str
    relative: Path
    purpose: str
    content_type: str
    bytes: int


class FileService:
    def __init__(
        self,
        database: Database,
        data_dir: Path,
        quota: StorageQuota,
        *,
        file_retention_days: float = 0.0,
        video_retention_days: float = 0.0,
    ) -> None:
        self._db = database
        self._root = (data_dir / "files").resolve()
        self.quota = quota
        self._keep_days = {"": file_retention_days, VIDEO_OUTPUT: video_retention_days}

    async def store(
        self, user_id: str, data: bytes, *, filename: str, purpose: str, content_type: str
    ) -> FileObject:
        (stored,) = await self.store_all(user_id, [NewFile(data, filename, purpose, content_type)])
        return stored

    async def store_all(self, user_id: str, new: Sequence[NewFile]) -> list[FileObject]:
        """Store every file or none: refused (StorageQuotaExceeded) before a byte is written
        unless all of them fit in the user's quota."""
        await self.quota.require_room(user_id, sum(len(f.data) for f in new))
        placed = [self._place(user_id, f.filename, f.purpose, f.content_type, len(f.data)) for f in new]
        try:
            for item, f in zip(placed, new, strict=True):
                await asyncio.to_thread(self._write, self._root / item.relative, f.data)
            return await self._insert(user_id, placed, enforce_quota=True, param=None)
        except BaseException:
            await asyncio.to_thread(self._unlink, [item.relative for item in placed])
            raise

    def staging_path(self) -> Path:
        """A fresh path to write a file that `store_path` will then take."""
        return self._root / ".staging" / secrets.token_hex(16)

    async def store_path(
        self,
        user_id: str,
        source: Path,
        *,
        filename: str,
        purpose: str,
        content_type: str,
        enforce_quota: bool = True,
    ) -> FileObject:
        """Store the finished file at `source` (moved, not copied). Without `enforce_quota` it is
        counted against the quota but never refused."""
        size = await asyncio.to_thread(lambda: source.stat().st_size)
        if enforce_quota:
            await self.quota.require_room(user_id, size, param="file")
        item = self._place(user_id, filename, purpose, content_type, size)
        await asyncio.to_thread(self._move, source, self._root / item.relative)
        try:
            (stored,) = await self._insert(user_id, [item], enforce_quota=enforce_quota, param="file")
        except BaseException:
            await asyncio.to_thread(self._unlink, [item.relative])
            raise
        return stored

    async def store_stream(
        self,
        user_id: str,
        source: BinaryIO,
        *,
        filename: str,
        purpose: str,
        content_type: str,
        max_bytes: int,
    ) -> FileObject:
        """Store what `source` holds, copied a block at a time; PayloadTooLarge past `max_bytes`,
        StorageQuotaExceeded past the user's room (both found while copying to the staging area,
        so nothing is stored)."""
        await self.quota.require_room(user_id, param="file")  # a full quota refuses before a byte is read
        room = await self.quota.room(user_id)
        staging = self.staging_path()
        try:
            copied = await asyncio.to_thread(_copy_limited, source, staging, max_bytes, room)
            if copied is None:
                raise self.quota.upload_refusal(room or 0, param="file")
            return await self.store_path(
                user_id, staging, filename=filename, purpose=purpose, content_type=content_type
            )
        finally:
            await asyncio.to_thread(staging.unlink, missing_ok=True)

    def _place(self, user_id: str, filename: str, purpose: str, content_type: str, size: int) -> _Placed:
        file_id = new_file_id()
        safe = _SAFE_NAME.sub("_", filename)[:200] or "file"
        return _Placed(file_id, safe, Path(user_id) / f"{file_id}-{safe}", purpose, content_type, size)

    async def _insert(
        self, user_id: str, placed: list[_Placed], *, enforce_quota: bool, param: str | None
    ) -> list[FileObject]:
        now = utcnow()
        rows = [
            {
                "id": item.id,
                "user_id": user_id,
                "purpose": item.purpose,
                "filename": item.filename,
                "content_type": item.content_type,
                "bytes": item.bytes,
                "storage_path": str(item.relative),
                "created_at": now,
            }
            for item in placed
        ]
        total = sum(item.bytes for item in placed)
        async with self._db.write() as conn:
            await self.quota.charge(conn, user_id, total, enforce=enforce_quota, param=param)
            await conn.execute(insert(files), rows)
        return [self._object(row) for row in rows]

    def _object(self, row: Any) -> FileObject:
        created = _aware(row["created_at"])
        keep_days = self._keep_days.get(row["purpose"], self._keep_days[""])
        expires = int((created + timedelta(days=keep_days)).timestamp()) if keep_days else None
        return FileObject(
            id=row["id"],
            bytes=row["bytes"],
            created_at=int(created.timestamp()),
            expires_at=expires,
            filename=row["filename"],
            purpose=row["purpose"],
        )

    @staticmethod
    def _move(source: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)

    async def get(self, user_id: str, file_id: str) -> FileObject:
        return self._object((await self._row(user_id, file_id))._mapping)

    async def content(self, user_id: str, file_id: str) -> FileContent:
        row = await self._row(user_id, file_id)
        path = self._root / row.storage_path
        if not await asyncio.to_thread(path.is_file):
            raise NotFound(f"The content of file '{file_id}' is no longer stored.", param="file_id")
        return FileContent(path, row.content_type, row.filename, row.bytes)

    async def linked_content(self, file_id: str) -> FileContent:
        """A file's bytes for a signed media link (core/media/links.py): the link's signature, not
        a key, says who may read it, so this looks the file up by id alone."""
        async with self._db.read() as conn:
            row = (await conn.execute(select(files).where(files.c.id == file_id))).first()
        if row is None:
            raise NotFound(f"No such file: '{file_id}'.", param="file_id")
        return await self.content(row.user_id, file_id)

    async def delete(self, user_id: str, file_id: str) -> None:
        """Remove the row and the bytes (no error if already gone)."""
        await self.delete_ids([file_id], user_id=user_id)

    async def delete_owned(self, user_id: str, file_id: str) -> FileDeleted:
        """DELETE /v1/files/{id}: the owner's file, else 404 (like every other read of it)."""
        if not await self.delete_ids([file_id], user_id=user_id):
            raise NotFound(f"No such file: '{file_id}'.", param="file_id")
        return FileDeleted(id=file_id)

    async def delete_ids(self, file_ids: Sequence[str], *, user_id: str | None = None) -> int:
        """Remove these files (of `user_id` only, when named): rows and quota count in one
        transaction, then the bytes. Returns how many rows this call removed; a file already gone
        (deleted by its owner, or by another process's purge) is skipped, never an error."""
        if not file_ids:
            return 0
        owned = [] if user_id is None else [files.c.user_id == user_id]
        query = (
            delete(files)
            .where(files.c.id.in_(file_ids), *owned)
            .returning(files.c.user_id, files.c.bytes, files.c.storage_path)
        )
        freed: dict[str, int] = defaultdict(int)
        async with self._db.write() as conn:
            removed = (await conn.execute(query)).all()
            for row in removed:
                freed[row.user_id] += row.bytes
            await self.quota.refund(conn, freed)
        await asyncio.to_thread(self._unlink, [Path(row.storage_path) for row in removed])
        return len(removed)

    async def _row(self, user_id: str, file_id: str) -> Any:
        async with self._db.read() as conn:
            row = (
                await conn.execute(select(files).where(files.c.id == file_id, files.c.user_id == user_id))
            ).first()
        if row is None:
            raise NotFound(f"No such file: '{file_id}'.", param="file_id")
        return row

    def _unlink(self, relatives: Sequence[Path]) -> None:
        for relative in relatives:
            (self._root / relative).unlink(missing_ok=True)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        partial.write_bytes(data)
        os.replace(partial, path)


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes that are UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _copy_limited(source: BinaryIO, target: Path, max_bytes: int, room: int | None) -> int | None:
    """Copy `source` to `target`: its size, or None once it passes `room` (PayloadTooLarge past
    `max_bytes`, the upload limit, whichever comes first)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    copied = 0
    with target.open("wb") as out:
        while block := source.read(1 << 20):
            copied += len(block)
            if copied > max_bytes:
                raise PayloadTooLarge(f"The file exceeds the limit of {max_bytes} bytes.")
            if room is not None and copied > room:
                return None
            out.write(block)
    return copied
