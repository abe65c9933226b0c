"""The per-user storage quota: how many bytes of stored files (uploads, generated media, batch
results) a user holds, against BATCHIN_STORAGE_QUOTA_BYTES (0: no limit).

The count lives in `storage_usage` and moves in the same transaction as the file rows it counts
(`charge` with an insert, `refund` with a delete), so it never drifts from the files table. A
charge is one conditional upsert: the row grows only while it stays within the quota, so two
writers racing for the last bytes (in one process or several, SQLite or PostgreSQL) cannot both
pass; the loser's transaction rolls back with its file rows. `require_room` is the cheap read
that refuses before a byte is written; the charge is what makes the refusal exact.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import BigInteger, bindparam, case, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from batchin.errors import StorageQuotaExceeded
from batchin.store.database import Database
from batchin.store.tables import storage_usage
from batchin.store.upsert import upsert_insert

__all__ = ["StorageQuota"]

_FREE_HINT = (
    "Delete files you no longer need (DELETE /v1/files/{file_id}, DELETE /v1/videos/{video_id}) "
    "or wait for them to expire."
)


class StorageQuota:
    def __init__(self, database: Database, quota_bytes: int) -> None:
        self._db = database
        self._insert = upsert_insert(database.dialect)
        self.limit: int | None = quota_bytes or None  # None: no limit

    async def used(self, user_id: str) -> int:
        async with self._db.read() as conn:
            return await _used(conn, user_id)

    async def room(self, user_id: str) -> int | None:
        """Bytes the user may still store (None: no limit; negative past it, after batch results)."""
        return None if self.limit is None else self.limit - await self.used(user_id)

    async def require_room(self, user_id: str, incoming: int = 1, *, param: str | None = None) -> None:
        """Refuse now if `incoming` more bytes cannot fit (1: the user has no room left at all)."""
        if self.limit is None:
            return
        used = await self.used(user_id)
        if used + incoming > self.limit:
            raise self._refusal(used, incoming, param)

    async def charge(
        self,
        conn: AsyncConnection,
        user_id: str,
        nbytes: int,
        *,
        enforce: bool = True,
        param: str | None = None,
    ) -> None:
        """Count `nbytes` more for the user in `conn`'s transaction; with `enforce`, refuse
        (StorageQuotaExceeded, nothing counted) if that would pass the quota."""
        stmt = self._insert(storage_usage).values(user_id=user_id, bytes=nbytes)
        grown = storage_usage.c.bytes + stmt.excluded.bytes
        limited = enforce and self.limit is not None
        if limited and self.limit is not None and nbytes > self.limit:
            raise self._refusal(await _used(conn, user_id), nbytes, param)
        stmt = stmt.on_conflict_do_update(
            index_elements=[storage_usage.c.user_id],
            set_={"bytes": grown},
            where=(grown <= self.limit) if limited else None,
        )
        result = await conn.execute(stmt)
        if result.rowcount != 1:
            raise self._refusal(await _used(conn, user_id), nbytes, param)

    @staticmethod
    async def refund(conn: AsyncConnection, freed: Mapping[str, int]) -> None:
        """Count the bytes of deleted files off their users, in `conn`'s transaction."""
        if not freed:
            return
        n = bindparam("freed_bytes", type_=BigInteger)
        stmt = (
            update(storage_usage)
            .where(storage_usage.c.user_id == bindparam("owner"))
            .values(bytes=case((storage_usage.c.bytes > n, storage_usage.c.bytes - n), else_=0))
        )
        await conn.execute(stmt, [{"owner": user, "freed_bytes": size} for user, size in freed.items()])

    def upload_refusal(self, room: int, *, param: str | None) -> StorageQuotaExceeded:
        """For an upload found, while it streams in, to be larger than the `room` left."""
        return StorageQuotaExceeded(
            f"The upload is larger than the {max(room, 0)} bytes left in your storage quota of "
            f"{self.limit} bytes. {_FREE_HINT}",
            param=param,
        )

    def _refusal(self, used: int, incoming: int, param: str | None) -> StorageQuotaExceeded:
        if incoming <= 1:
            what = f"Your stored files use {used} bytes of your storage quota of {self.limit} bytes."
        else:
            what = (
                f"Storing {incoming} bytes would take your stored files to {used + incoming} bytes, "
                f"past your storage quota of {self.limit} bytes ({used} used)."
            )
        return StorageQuotaExceeded(f"{what} {_FREE_HINT}", param=param)


async def _used(conn: AsyncConnection, user_id: str) -> int:
    query = select(storage_usage.c.bytes).where(storage_usage.c.user_id == user_id)
    return int((await conn.execute(query)).scalar() or 0)
