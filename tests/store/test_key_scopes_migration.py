"""Migration 0009 (issue 13): keys made before scopes existed keep every scope and every model."""

from __future__ import annotations

import uuid

from alembic import command
from sqlalchemy import text

from batchin.core.accounts.keys import display_prefix, generate_secret, hash_secret
from batchin.core.clock import utcnow
from batchin.protocol.accounts import ALL_SCOPES
from batchin.services import Services
from batchin.store.migrate import alembic_config, upgrade


async def test_a_key_from_before_scopes_keeps_every_scope_and_model(services: Services) -> None:
    async with services.database.write() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0008_prompts"))
    user_id, key_id, secret = str(uuid.uuid4()), str(uuid.uuid4()), generate_secret()
    async with services.database.write() as conn:
        now = utcnow()
        await conn.execute(
            text(
                "INSERT INTO users (id, email, name, balance_units, created_at) "
                "VALUES (:id, 'old@example.com', 'Old', 0, :now)"
            ),
            {"id": user_id, "now": now},
        )
        await conn.execute(
            text(
                "INSERT INTO api_keys (id, user_id, key_hash, key_prefix, name, rate_limit_rpm, "
                "is_active, created_at) VALUES (:id, :user, :hash, :prefix, 'old', 60, true, :now)"
            ),
            {
                "id": key_id,
                "user": user_id,
                "hash": hash_secret(secret),
                "prefix": display_prefix(secret),
                "now": now,
            },
        )
    await upgrade(services.database)
    [key] = await services.accounts.list_keys(user_id)
    assert (key.scopes, key.models) == (list(ALL_SCOPES), [])
    principal = await services.auth.authenticate(secret)
    assert principal.scopes == frozenset(ALL_SCOPES)
    assert principal.models == frozenset()
