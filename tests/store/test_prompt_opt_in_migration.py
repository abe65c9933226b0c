"""Migration 0014 (issue 13): registries from before the opt-in have experiments off, and the
conversations sampled so far are deleted."""

from __future__ import annotations

from alembic import command
from sqlalchemy import func, insert, select

from batchin.core.clock import utcnow
from batchin.services import Services
from batchin.store.migrate import alembic_config, upgrade
from batchin.store.tables import prompt_registries, prompt_samples
from tests.conftest import MakeUser


async def test_existing_registries_are_opted_out_and_their_samples_deleted(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    async with services.database.write() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0013_storage_retention"))
    async with services.database.write() as conn:
        now = utcnow()
        await conn.execute(
            insert(prompt_registries).values(
                user_id=user.id,
                registry_id="support",
                display_name="support",
                source="auto_backfill",
                total_runs=1,
                created_at=now,
            )
        )
        await conn.execute(
            insert(prompt_samples).values(
                user_id=user.id,
                version_id="support@v1",
                model_id="m",
                messages="[]",
                output_text="secret",
                max_tokens=8,
                temperature=0.0,
                latency_ms=1,
                cost_units=1,
                created_at=now,
            )
        )
    await upgrade(services.database)
    [registry] = (await services.prompts.list_prompts(user.id)).items
    assert (registry.registry_id, registry.experiments_enabled) == ("support", False)
    async with services.database.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(prompt_samples)) == 0
