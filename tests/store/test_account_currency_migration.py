"""Migration 0016 (issue 15): accounts opened before currencies existed are USD accounts."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from batchin.core.clock import utcnow
from batchin.services import Services
from batchin.store.migrate import alembic_config, upgrade
from batchin.store.tables import users
from tests.conftest import MakeUser


async def test_an_account_from_before_currencies_is_usd(services: Services, make_user: MakeUser) -> None:
    user = await make_user(credit_cents=250)
    async with services.database.write() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0015_video_job_receipts"))
    await upgrade(services.database)
    me = await services.accounts.get_user(user.id)
    assert (me.currency, me.credit_balance_cents) == ("USD", 250)
    # Nothing hanging off the user is lost (a SQLite table rebuild of users would cascade to them).
    assert (await services.auth.authenticate(user.api_key)).currency == "USD"
    assert [t.amount_cents for t in await services.topups.history(user.id)] == [250]


async def test_the_store_refuses_an_unknown_currency(services: Services) -> None:
    with pytest.raises(IntegrityError):
        async with services.database.write() as conn:
            await conn.execute(
                insert(users).values(
                    id="00000000-0000-4000-8000-000000000001",
                    email="eur@example.com",
                    name="Eur",
                    balance_units=0,
                    currency="EUR",
                    created_at=utcnow(),
                )
            )


async def test_console_columns_come_and_go_without_touching_what_hangs_off_users(
    services: Services, make_user: MakeUser
) -> None:
    """0017 adds users' console columns in place: a SQLite rebuild of users would cascade."""
    user = await make_user(credit_cents=125)
    async with services.database.write() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0016_account_currency"))
    await upgrade(services.database)
    assert (await services.auth.authenticate(user.api_key)).verified
    assert [t.amount_cents for t in await services.topups.history(user.id)] == [125]
