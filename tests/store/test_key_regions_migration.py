"""Migration 0012 (issue 13): keys made before regions existed keep every region."""

from __future__ import annotations

from alembic import command

from batchin.protocol.accounts import KeyCreateRequest
from batchin.services import Services
from batchin.store.migrate import alembic_config, upgrade
from tests.conftest import MakeUser


async def test_a_key_from_before_regions_keeps_every_region(services: Services, make_user: MakeUser) -> None:
    user = await make_user()
    async with services.database.write() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0011_video_job_origin"))
    await upgrade(services.database)
    [key] = await services.accounts.list_keys(user.id)
    assert key.regions == []
    assert (await services.auth.authenticate(user.api_key)).regions == ()
    bound = await services.accounts.create_key(user.id, KeyCreateRequest(regions=["global"]))
    assert (await services.auth.authenticate(bound.key)).regions == ("global",)
