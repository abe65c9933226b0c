"""AuthService's key cache: requests that miss it together share one read of the key."""

from __future__ import annotations

import asyncio

import pytest

from batchin.core.accounts.auth import AuthService
from batchin.core.billing.limits import InMemoryRateLimiter
from batchin.core.context import Principal
from batchin.errors import Unauthorized
from batchin.services import Services
from tests.conftest import MakeUser


class CountingAuth(AuthService):
    """The real service, counting its reads of the keys table."""

    reads = 0

    async def _load(self, digest: str) -> Principal:
        self.reads += 1
        return await super()._load(digest)


@pytest.fixture
def auth(services: Services) -> CountingAuth:
    return CountingAuth(services.database, InMemoryRateLimiter(), cache_seconds=60)


async def test_sixteen_concurrent_misses_read_the_key_once(auth: CountingAuth, make_user: MakeUser) -> None:
    user = await make_user()

    principals = await asyncio.gather(*(auth.authenticate(user.api_key) for _ in range(16)))

    assert auth.reads == 1
    assert {p.key_id for p in principals} == {principals[0].key_id}


async def test_a_cancelled_waiter_does_not_cancel_the_others(auth: CountingAuth, make_user: MakeUser) -> None:
    user = await make_user()
    first = asyncio.ensure_future(auth.authenticate(user.api_key))
    second = asyncio.ensure_future(auth.authenticate(user.api_key))
    await asyncio.sleep(0)

    first.cancel()
    principal = await second

    assert first.cancelled()
    assert principal.user_id == user.id
    assert auth.reads == 1


async def test_an_unknown_key_is_refused_to_every_waiter(auth: CountingAuth) -> None:
    secret = "batchin_api_" + "0" * 43

    results = await asyncio.gather(*(auth.authenticate(secret) for _ in range(4)), return_exceptions=True)

    assert all(isinstance(result, Unauthorized) for result in results)
    assert auth.reads == 1


async def test_a_key_revoked_during_a_read_is_not_cached(auth: CountingAuth, make_user: MakeUser) -> None:
    user = await make_user()
    reading = asyncio.ensure_future(auth.authenticate(user.api_key))
    await asyncio.sleep(0)

    await auth.forget_key("any key: the read cannot tell yet")
    await reading
    await auth.authenticate(user.api_key)

    assert auth.reads == 2
