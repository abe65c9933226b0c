"""The migrations build exactly the schema that batchin.store.tables declares, on both backends."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from batchin.services import Services
from batchin.store.migrate import alembic_config, current_revision, upgrade
from batchin.store.tables import metadata


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def schema_differences(services: Services) -> list[Any]:
    def compare(sync_conn: Any) -> list[Any]:
        context = MigrationContext.configure(
            sync_conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, metadata))

    async with services.database.read() as conn:
        return await conn.run_sync(compare)


async def table_names(services: Services) -> set[str]:
    async with services.database.read() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_migrated_database_matches_the_table_definitions(services: Services) -> None:
    assert await schema_differences(services) == []


async def test_every_declared_table_exists_after_migration(services: Services) -> None:
    assert await table_names(services) == set(metadata.tables) | {"alembic_version"}


async def test_database_is_at_the_head_revision(services: Services) -> None:
    assert await current_revision(services.database) == head_revision()


async def test_upgrading_again_is_a_no_op(services: Services) -> None:
    user = await services.accounts.create_user("kept@example.com", "Kept", 5)
    await upgrade(services.database)
    assert await current_revision(services.database) == head_revision()
    assert (await services.accounts.get_user(user.id)).credit_balance_cents == 5
    assert await schema_differences(services) == []


async def test_downgrade_to_base_and_back_restores_the_schema(services: Services) -> None:
    async with services.database.write() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "base"))
    assert await table_names(services) == {"alembic_version"}
    assert await current_revision(services.database) is None
    await upgrade(services.database)
    assert await current_revision(services.database) == head_revision()
    assert await schema_differences(services) == []
