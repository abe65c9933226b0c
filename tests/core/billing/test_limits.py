"""Per-key RPM limits: the GCRA with an injected clock, the Redis limiter against a real redis-server,
and admission across two auth services that share Redis (two processes in one)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from batchin.core.accounts.auth import AuthService
from batchin.core.billing.limits import InMemoryRateLimiter, KeyRevoked, RateDecision, period_micros
from batchin.core.billing.limits_redis import RedisRateLimiter
from batchin.errors import RateLimited, ServiceUnavailable, Unauthorized
from batchin.protocol.accounts import KeyCreateRequest
from batchin.services import Services
from tests.conftest import REDIS_URL, MakeUser

needs_redis = pytest.mark.skipif(not REDIS_URL, reason="needs BATCHIN_TEST_REDIS_URL (a real redis-server)")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limiter(clock: Clock) -> InMemoryRateLimiter:
    return InMemoryRateLimiter(clock=clock)


async def hits(
    limiter: InMemoryRateLimiter | RedisRateLimiter, n: int, limit: int, bucket: str = "b"
) -> list[RateDecision]:
    return [await limiter.hit(bucket, limit) for _ in range(n)]


# -- GCRA, in process, injected clock ------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 3, 7, 10, 600])
async def test_limit_requests_pass_then_one_more_waits_exactly_one_period(
    limiter: InMemoryRateLimiter, limit: int
) -> None:
    passed = await hits(limiter, limit, limit)
    refused = await limiter.hit("b", limit)

    assert all(d.allowed for d in passed)
    assert not refused.allowed
    assert refused.retry_after == period_micros(limit) / 1e6 == pytest.approx(60 / limit, abs=1e-6)


async def test_remaining_and_reset_count_down(limiter: InMemoryRateLimiter) -> None:
    decisions = await hits(limiter, 11, 10)

    assert [d.state.remaining for d in decisions] == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0]
    assert [d.state.reset_seconds for d in decisions[:10]] == [6.0 * k for k in range(1, 11)]
    assert decisions[10].state.reset_seconds == 60.0
    assert {d.state.limit for d in decisions} == {10}
    assert decisions[10].state.headers() == {
        "x-ratelimit-limit": "10",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": "60.000",
    }


@pytest.mark.parametrize("limit", [7, 10])
async def test_one_request_refills_after_sixty_over_n_seconds(
    limiter: InMemoryRateLimiter, clock: Clock, limit: int
) -> None:
    period = period_micros(limit) / 1e6
    await hits(limiter, limit, limit)

    clock.now += period - 1e-6
    early = await limiter.hit("b", limit)
    clock.now += 1e-6
    on_time = await limiter.hit("b", limit)
    after = await limiter.hit("b", limit)

    assert not early.allowed
    assert early.retry_after == pytest.approx(1e-6, abs=1e-9)
    assert on_time.allowed
    assert on_time.state.remaining == 0
    assert not after.allowed
    assert after.retry_after == pytest.approx(period, abs=1e-9)


async def test_a_full_minute_restores_the_whole_burst(limiter: InMemoryRateLimiter, clock: Clock) -> None:
    await hits(limiter, 10, 10)
    clock.now += 60
    again = await hits(limiter, 11, 10)
    assert [d.allowed for d in again] == [True] * 10 + [False]
    assert again[0].state.remaining == 9


async def test_refused_requests_cost_nothing(limiter: InMemoryRateLimiter, clock: Clock) -> None:
    await hits(limiter, 10, 10)
    refusals = await hits(limiter, 50, 10)
    clock.now += 6.0
    assert not any(d.allowed for d in refusals)
    assert (await limiter.hit("b", 10)).allowed


async def test_buckets_are_independent(limiter: InMemoryRateLimiter) -> None:
    await hits(limiter, 2, 2, bucket="key:a")
    assert not (await limiter.hit("key:a", 2)).allowed
    assert (await limiter.hit("key:b", 2)).allowed


async def test_a_revoked_key_is_refused_by_key_id_whatever_the_bucket(limiter: InMemoryRateLimiter) -> None:
    await limiter.mark_revoked("k1")
    with pytest.raises(KeyRevoked):
        await limiter.hit("key:k1", 10, key_id="k1")
    with pytest.raises(KeyRevoked):
        await limiter.hit("key:k1:region:eu", 10, key_id="k1")
    assert (await limiter.hit("key:k2", 10, key_id="k2")).allowed
    assert await limiter.is_revoked("k1")
    assert not await limiter.is_revoked("k2")


async def test_idle_buckets_are_dropped_when_the_table_is_full(clock: Clock) -> None:
    limiter = InMemoryRateLimiter(clock=clock, max_buckets=2)
    await limiter.hit("a", 1)
    await limiter.hit("b", 1)
    clock.now += 60
    await limiter.hit("c", 1)
    # "a" was dropped as idle: a fresh bucket, not one still waiting out its period.
    assert (await limiter.hit("a", 1)).allowed


@pytest.mark.parametrize("limit", [0, -1])
async def test_a_limit_below_one_is_a_programming_error(limiter: InMemoryRateLimiter, limit: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        await limiter.hit("b", limit)


# -- Redis: same semantics, atomic, shared ------------------------------------------------------


@pytest.fixture
async def redis_namespace() -> AsyncIterator[str]:
    import redis.asyncio as redis_asyncio

    namespace = f"batchin-test-{uuid.uuid4().hex}"
    yield namespace
    client = redis_asyncio.from_url(REDIS_URL or "")
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def redis_limiter(redis_namespace: str) -> AsyncIterator[RedisRateLimiter]:
    limiter = RedisRateLimiter(REDIS_URL or "", namespace=redis_namespace)
    yield limiter
    await limiter.close()


@needs_redis
@pytest.mark.redis
async def test_redis_n_pass_then_one_more_waits_one_period(redis_limiter: RedisRateLimiter) -> None:
    decisions = await hits(redis_limiter, 11, 10)

    assert [d.allowed for d in decisions] == [True] * 10 + [False]
    assert [d.state.remaining for d in decisions] == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0]
    # Redis's clock moves while we send: the wait is one period less the time the burst took.
    assert 5.5 < decisions[10].retry_after <= 6.0
    assert 59.5 < decisions[10].state.reset_seconds <= 60.0
    assert decisions[0].state.reset_seconds == pytest.approx(6.0, abs=0.5)


@needs_redis
@pytest.mark.redis
async def test_redis_refills_one_request_after_sixty_over_n_seconds(redis_limiter: RedisRateLimiter) -> None:
    await asyncio.gather(*(redis_limiter.hit("b", 60) for _ in range(60)))
    refused = await redis_limiter.hit("b", 60)
    assert not refused.allowed
    assert 0.5 < refused.retry_after <= 1.0

    await asyncio.sleep(refused.retry_after + 0.02)

    assert (await redis_limiter.hit("b", 60)).allowed
    assert not (await redis_limiter.hit("b", 60)).allowed


@needs_redis
@pytest.mark.redis
async def test_redis_hundred_concurrent_hits_allow_exactly_the_limit(redis_limiter: RedisRateLimiter) -> None:
    decisions = await asyncio.gather(*(redis_limiter.hit("key:k", 10, key_id="k") for _ in range(100)))
    assert sum(d.allowed for d in decisions) == 10


@needs_redis
@pytest.mark.redis
async def test_redis_budget_is_shared_between_processes(redis_namespace: str) -> None:
    first = RedisRateLimiter(REDIS_URL or "", namespace=redis_namespace)
    second = RedisRateLimiter(REDIS_URL or "", namespace=redis_namespace)
    try:
        decisions = await asyncio.gather(
            *(limiter.hit("key:k", 10, key_id="k") for _ in range(25) for limiter in (first, second))
        )
    finally:
        await first.close()
        await second.close()
    assert sum(d.allowed for d in decisions) == 10


@needs_redis
@pytest.mark.redis
async def test_redis_mark_revoked_refuses_the_next_hit_in_every_process(
    redis_limiter: RedisRateLimiter, redis_namespace: str
) -> None:
    other_process = RedisRateLimiter(REDIS_URL or "", namespace=redis_namespace)
    try:
        assert (await other_process.hit("key:k1", 10, key_id="k1")).allowed
        await redis_limiter.mark_revoked("k1")
        with pytest.raises(KeyRevoked):
            await other_process.hit("key:k1", 10, key_id="k1")
        assert await other_process.is_revoked("k1")
        assert (await other_process.hit("key:k2", 10, key_id="k2")).allowed
        assert not await other_process.is_revoked("k2")
    finally:
        await other_process.close()


@needs_redis
@pytest.mark.redis
async def test_redis_stores_the_arrival_time_as_an_exact_integer(
    redis_limiter: RedisRateLimiter, redis_namespace: str
) -> None:
    import redis.asyncio as redis_asyncio

    await redis_limiter.hit("key:k", 7, key_id="k")
    client = redis_asyncio.from_url(REDIS_URL or "")
    try:
        stored = await client.get(f"{redis_namespace}:{{k}}:rl:key:k")
        ttl_ms = await client.pttl(f"{redis_namespace}:{{k}}:rl:key:k")
    finally:
        await client.aclose()
    assert stored is not None
    assert stored.isdigit()  # not "1.7e+15": a rounded TAT would drift the bucket
    assert 0 < ttl_ms <= period_micros(7) // 1000 + 1


async def test_an_unreachable_redis_refuses_with_503() -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(ServiceUnavailable, match="rate limiter"):
            await limiter.hit("key:k", 10, key_id="k")
        await limiter.mark_revoked("k")  # best effort: logged, not raised
    finally:
        await limiter.close()


# -- admission: AuthService over the limiter ------------------------------------------------------


async def test_admission_refuses_with_retry_after_once_the_limit_is_spent(
    services: Services, make_user: MakeUser, clock: Clock
) -> None:
    user = await make_user()
    key = await services.accounts.create_key(user.id, KeyCreateRequest(rate_limit_rpm=10))
    auth = AuthService(services.database, InMemoryRateLimiter(clock=clock), cache_seconds=60)

    states = [(await auth.admit(key.key))[1] for _ in range(10)]
    with pytest.raises(RateLimited) as refused:
        await auth.admit(key.key)
    await auth.drain()

    assert [s.remaining for s in states] == list(range(9, -1, -1))
    assert refused.value.headers["Retry-After"] == "6"
    assert refused.value.headers["x-ratelimit-remaining"] == "0"
    assert refused.value.retry_after == 6.0


@needs_redis
@pytest.mark.redis
async def test_two_processes_share_one_budget_and_see_a_revocation_at_once(
    services: Services, make_user: MakeUser, redis_namespace: str
) -> None:
    user = await make_user()
    key = await services.accounts.create_key(user.id, KeyCreateRequest(rate_limit_rpm=4))
    # A long auth cache: only the shared Redis marker can tell process B that A revoked the key.
    limiters = [RedisRateLimiter(REDIS_URL or "", namespace=redis_namespace) for _ in range(2)]
    processes = [AuthService(services.database, limiter, cache_seconds=300) for limiter in limiters]
    a, b = processes
    try:
        outcomes = []
        for i in range(8):
            try:
                await processes[i % 2].admit(key.key)
                outcomes.append("ok")
            except RateLimited:
                outcomes.append("429")
        assert outcomes.count("ok") == 4
        await a.forget_key(key.id)
        with pytest.raises(Unauthorized):
            await b.admit(key.key)
    finally:
        for auth, limiter in zip(processes, limiters, strict=True):
            await auth.drain()
            await limiter.close()
