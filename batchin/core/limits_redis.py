"""Rate limits shared across server processes through Redis (`BATCHIN_REDIS_URL`).

One Lua script per request does the GCRA step atomically with Redis's own clock, so processes with
skewed clocks still agree; it also answers whether the key was revoked by another process, which
lets every process drop a revoked key at once without an extra round trip.
"""

from __future__ import annotations

from typing import Any

from batchin.core.context import RateLimitState
from batchin.core.limits import RateDecision

_SCRIPT = """
if redis.call('EXISTS', KEYS[2]) == 1 then return {-1, 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local period = math.floor(60000000 / limit)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - (limit - 1) * period
if now < allow_at then return {0, allow_at - now, tat - now} end
local new_tat = tat + period
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
local remaining = math.floor((now + limit * period - new_tat) / period)
return {1, remaining, new_tat - now}
"""

_REVOKED_TTL_SECONDS = 7 * 24 * 3600


class KeyRevoked(Exception):
    """The key was revoked (possibly by another process)."""


class RedisRateLimiter:
    def __init__(self, url: str, namespace: str = "batchin") -> None:
        import redis.asyncio as redis_asyncio

        self._redis: Any = redis_asyncio.from_url(url)
        self._script: Any = self._redis.register_script(_SCRIPT)
        self._ns = namespace

    async def hit(self, bucket: str, limit_per_minute: int) -> RateDecision:
        key_id = bucket.split(":", 1)[-1]
        allowed, value, reset_us = await self._script(
            keys=[f"{self._ns}:rl:{bucket}", f"{self._ns}:revoked:{key_id}"], args=[limit_per_minute]
        )
        if allowed == -1:
            raise KeyRevoked(key_id)
        if allowed == 1:
            state = RateLimitState(limit_per_minute, int(value), reset_us / 1e6)
            return RateDecision(True, 0.0, state)
        state = RateLimitState(limit_per_minute, 0, reset_us / 1e6)
        return RateDecision(False, value / 1e6, state)

    async def mark_revoked(self, key_id: str) -> None:
        await self._redis.set(f"{self._ns}:revoked:{key_id}", 1, ex=_REVOKED_TTL_SECONDS)

    async def is_revoked(self, key_id: str) -> bool:
        return bool(await self._redis.exists(f"{self._ns}:revoked:{key_id}"))

    async def close(self) -> None:
        await self._redis.aclose()
