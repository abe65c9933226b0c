"""Per-user webhook signing secrets, encrypted at rest.

The user reads the secret back (to verify our signatures), so it cannot be stored as a hash as API
keys are. Instead each secret is sealed with XSalsa20-Poly1305 (PyNaCl SecretBox) under a server key
that lives in a file (mode 0600, created on first start) outside the database: a leaked database
dump alone yields no secret. The sealed text also names its user, so a row copied to another user
does not decrypt as theirs. Secrets never reach a log.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from batchin.core.clock import utcnow
from batchin.core.secret_file import load_or_create_hex_key
from batchin.core.webhooks.signing import new_secret
from batchin.store.database import Database
from batchin.store.tables import webhook_secrets

__all__ = ["StoredSecret", "WebhookSecrets", "load_or_create_key"]


@dataclass(frozen=True, slots=True)
class StoredSecret:
    secret: str = field(repr=False)
    created_at: datetime


def load_or_create_key(path: Path) -> bytes:
    """The SecretBox key in `path` (hex), created with mode 0600 when the file does not exist."""
    return load_or_create_hex_key(path, SecretBox.KEY_SIZE)


class WebhookSecrets:
    def __init__(self, database: Database, key: bytes) -> None:
        self._db = database
        self._box = SecretBox(key)

    async def get(self, user_id: str) -> StoredSecret:
        """The user's secret, made on first use (concurrent first uses agree on one)."""
        existing = await self._load(user_id)
        if existing is not None:
            return existing
        fresh = StoredSecret(new_secret(), utcnow())
        try:
            async with self._db.write() as conn:
                await conn.execute(insert(webhook_secrets).values(**self._row(user_id, fresh)))
        except IntegrityError:
            pass  # another call created it first: use theirs
        stored = await self._load(user_id)
        if stored is None:  # the user is gone (the row cascaded away)
            raise LookupError(f"no user {user_id}")
        return stored

    async def rotate(self, user_id: str) -> StoredSecret:
        """A new secret replaces the old one at once: the old one stops verifying."""
        await self.get(user_id)  # the row exists from here on, so the update below always lands
        fresh = StoredSecret(new_secret(), utcnow())
        async with self._db.write() as conn:
            await conn.execute(
                update(webhook_secrets)
                .where(webhook_secrets.c.user_id == user_id)
                .values(**self._row(user_id, fresh))
            )
        return fresh

    async def _load(self, user_id: str) -> StoredSecret | None:
        query = select(webhook_secrets).where(webhook_secrets.c.user_id == user_id)
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return StoredSecret(self._open(user_id, row.sealed), row.created_at)

    def _row(self, user_id: str, stored: StoredSecret) -> dict[str, object]:
        sealed = self._box.encrypt(f"{user_id}\n{stored.secret}".encode())
        return {
            "user_id": user_id,
            "sealed": base64.b64encode(bytes(sealed)).decode("ascii"),
            "created_at": stored.created_at,
        }

    def _open(self, user_id: str, sealed: str) -> str:
        try:
            plain = self._box.decrypt(base64.b64decode(sealed)).decode()
        except (CryptoError, ValueError) as exc:
            raise RuntimeError("a webhook secret does not decrypt with this server's key file") from exc
        owner, _, secret = plain.partition("\n")
        if owner != user_id:
            raise RuntimeError("a webhook secret row belongs to another user")
        return secret
