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
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import delete, insert, select

from batchin.core.clock import utcnow
from batchin.errors import NotFound, PayloadTooLarge
from batchin.protocol.files import FileObject
from batchin.store.database import Database
from batchin.store.tables import files

__all__ = ["FileContent", "FileService", "new_file_id"]

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def new_file_id() -> str:
    return f"file-{secrets.token_hex(12)}"


@dataclass(frozen=True, slots=True)
class FileContent:
    path: Path
    content_type: str
    filename: str
    bytes: int


class FileService:
    def __init__(self, database: Database, data_dir: Path) -> None:
        self._db = database
        self._root = (data_dir / "files").resolve()

    async def store(
        self, user_id: str, data: bytes, *, filename: str, purpose: str, content_type: str
    ) -> FileObject:
        file_id = new_file_id()
        safe = _SAFE_NAME.sub("_", filename)[:200] or "file"
        relative = Path(user_id) / f"{file_id}-{safe}"
        await asyncio.to_thread(self._write, self._root / relative, data)
        return await self._insert(user_id, file_id, safe, relative, purpose, content_type, len(data))

    def staging_path(self) -> Path:
        """A fresh path to write a file that `store_path` will then take."""
        return self._root / ".staging" / secrets.token_hex(16)

    async def store_path(
        self, user_id: str, source: Path, *, filename: str, purpose: str, content_type: str
    ) -> FileObject:
        """Store the finished file at `source` (moved, not copied)."""
        file_id = new_file_id()
        safe = _SAFE_NAME.sub("_", filename)[:200] or "file"
        relative = Path(user_id) / f"{file_id}-{safe}"
        size = await asyncio.to_thread(self._move, source, self._root / relative)
        return await self._insert(user_id, file_id, safe, relative, purpose, content_type, size)

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
        """Store what `source` holds, copied a block at a time; PayloadTooLarge past `max_bytes`."""
        staging = self.staging_path()
        try:
            await asyncio.to_thread(_copy_limited, source, staging, max_bytes)
            return await self.store_path(
                user_id, staging, filename=filename, purpose=purpose, content_type=content_type
            )
        finally:
            await asyncio.to_thread(staging.unlink, missing_ok=True)

    async def _insert(
        self,
        user_id: str,
        file_id: str,
        safe: str,
        relative: Path,
        purpose: str,
        content_type: str,
        size: int,
    ) -> FileObject:
        now = utcnow()
        async with self._db.write() as conn:
            await conn.execute(
                insert(files).values(
                    id=file_id,
                    user_id=user_id,
                    purpose=purpose,
                    filename=safe,
                    content_type=content_type,
                    bytes=size,
                    storage_path=str(relative),
                    created_at=now,
                )
            )
        return FileObject(
            id=file_id, bytes=size, created_at=int(now.timestamp()), filename=safe, purpose=purpose
        )

    @staticmethod
    def _move(source: Path, target: Path) -> int:
        target.parent.mkdir(parents=True, exist_ok=True)
        size = source.stat().st_size
        os.replace(source, target)
        return size

    async def get(self, user_id: str, file_id: str) -> FileObject:
        row = await self._row(user_id, file_id)
        return FileObject(
            id=row.id,
            bytes=row.bytes,
            created_at=int(_aware(row.created_at).timestamp()),
            filename=row.filename,
            purpose=row.purpose,
        )

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
        async with self._db.write() as conn:
            row = (
                await conn.execute(select(files).where(files.c.id == file_id, files.c.user_id == user_id))
            ).first()
            if row is None:
                return
            await conn.execute(delete(files).where(files.c.id == file_id))
        await asyncio.to_thread((self._root / row.storage_path).unlink, missing_ok=True)

    async def _row(self, user_id: str, file_id: str) -> Any:
        async with self._db.read() as conn:
            row = (
                await conn.execute(select(files).where(files.c.id == file_id, files.c.user_id == user_id))
            ).first()
        if row is None:
            raise NotFound(f"No such file: '{file_id}'.", param="file_id")
        return row

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        partial.write_bytes(data)
        os.replace(partial, path)


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes that are UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _copy_limited(source: BinaryIO, target: Path, max_bytes: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    copied = 0
    with target.open("wb") as out:
        while block := source.read(1 << 20):
            copied += len(block)
            if copied > max_bytes:
                raise PayloadTooLarge(f"The file exceeds the limit of {max_bytes} bytes.")
            out.write(block)
