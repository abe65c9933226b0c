"""Console sign-in sessions, kept server-side so signing out (or an operator) revokes them at once.

The browser holds a random token; the store holds only its SHA-256, the user and the session's CSRF
token. Signing the cookie (HMAC) is the surface's business; this service sees the bare token."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update

from batchin.core.clock import utcnow
from batchin.store.database import Database
from batchin.store.tables import console_sessions

__all__ = ["ConsoleSession", "SessionService"]


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    token: str
    user_id: str
    csrf_token: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionService:
    def __init__(self, database: Database, *, lifetime_hours: float) -> None:
        self._db = database
        self._lifetime = timedelta(hours=lifetime_hours)

    async def open(self, user_id: str) -> ConsoleSession:
        session = ConsoleSession(secrets.token_urlsafe(32), user_id, secrets.token_urlsafe(32))
        now = utcnow()
        async with self._db.write() as conn:
            await conn.execute(
                console_sessions.insert().values(
                    token_hash=_digest(session.token),
                    user_id=user_id,
                    csrf_token=session.csrf_token,
                    created_at=now,
                    expires_at=now + self._lifetime,
                )
            )
        return session

    async def find(self, token: str) -> ConsoleSession | None:
        """The live session of `token`: None when unknown, revoked or expired."""
        c = console_sessions.c
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    select(c.user_id, c.csrf_token).where(
                        c.token_hash == _digest(token), c.revoked_at.is_(None), c.expires_at > utcnow()
                    )
                )
            ).first()
        return None if row is None else ConsoleSession(token, row.user_id, row.csrf_token)

    async def revoke(self, token: str) -> None:
        c = console_sessions.c
        async with self._db.write() as conn:
            await conn.execute(
                update(console_sessions)
                .where(c.token_hash == _digest(token), c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )

    async def revoke_all(self, user_id: str) -> int:
        c = console_sessions.c
        async with self._db.write() as conn:
            result = await conn.execute(
                update(console_sessions)
                .where(c.user_id == user_id, c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        return int(result.rowcount or 0)
