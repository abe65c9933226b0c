"""Migration 0013 (issue 13): files stored before the storage counter existed count against their
users' quota from the upgrade on."""

from __future__ import annotations

from alembic import command

from batchin.services import Services
from batchin.store.migrate import alembic_config, upgrade
from tests.conftest import MakeUser


async def test_files_from_before_the_counter_are_counted(services: Services, make_user: MakeUser) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    for user, sizes in ((alice, (10, 20)), (bob, (5,))):
        for size in sizes:
            await services.files.store(
                user.id, b"b" * size, filename="f.png", purpose="image_output", content_type="image/png"
            )
    async with services.database.write() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0012_key_regions"))

    await upgrade(services.database)

    quota = services.files.quota
    assert (await quota.used(alice.id), await quota.used(bob.id), await quota.used(carol.id)) == (30, 5, 0)
