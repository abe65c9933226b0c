"""Registering audit signing keys by id, and rotating the key file (`batchin vaas rotate-key`).

A public key stays registered under its id for good, so records signed before a rotation keep
verifying after it (the verifier looks the key up by the id the record names)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from batchin.config import Settings
from batchin.core.audit import keys as audit_keys
from batchin.core.clock import utcnow
from batchin.store.database import Database
from batchin.store.tables import vaas_keys, vaas_log_state

__all__ = ["key_path", "register_key", "rotate_key"]


def key_path(settings: Settings) -> Path:
    """The signing key's file: BATCHIN_VAAS_KEY_FILE, or `{data_dir}/vaas/signing_key`."""
    return settings.vaas_key_file or settings.data_dir / "vaas" / "signing_key"


async def register_key(database: Database, key: audit_keys.AuditKey) -> None:
    """Register `key`'s public half by its id (once), and make sure the log's state row exists."""
    async with database.write() as conn:
        known = await conn.scalar(select(vaas_keys.c.key_id).where(vaas_keys.c.key_id == key.key_id))
        if known is None:
            await conn.execute(
                insert(vaas_keys).values(
                    key_id=key.key_id, public_key=key.public_key_hex, created_at=utcnow()
                )
            )
        # The migration seeds the log's state row; recreate it if an operator emptied the tables.
        if await conn.scalar(select(vaas_log_state.c.id).where(vaas_log_state.c.id == 1)) is None:
            await conn.execute(insert(vaas_log_state).values(id=1, tree_size=0))


async def rotate_key(settings: Settings, database: Database) -> dict[str, Any]:
    """Replace the signing key file with a new key and register it; old records keep verifying
    because their public keys stay registered under their ids. Running servers pick the new key
    up when they restart."""
    old, new = audit_keys.rotate(key_path(settings))
    if old is not None:
        await register_key(database, old)  # a key made before its first server start is registered too
    await register_key(database, new)
    return {
        "key_id": new.key_id,
        "verify_key_hex": new.public_key_hex,
        "previous_key_id": old.key_id if old else None,
    }
