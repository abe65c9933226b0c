"""Rate limits shared across server processes through Redis (`BATCHIN_REDIS_URL`).

One Lua script per request does the GCRA step (limits.py, same integer microseconds) atomically with
Redis's own clock, so processes with skewed clocks still agree; it also answers whether the key was
revoked by another process, which lets every process drop a revoked key at once without an extra
round trip. A key's bucket and its revocation marker share a `{key_id}` hash tag, so the script's two
keys live in one slot and the same script runs unchanged on Redis Cluster.

An unreachable Redis refuses requests with 503 rather than admitting them unlimited: the limits exist
to protect upstream capacity and money, and "no limit while Redis is down" is an outage of its own.
"""

from __future__ import annotations

import logging
from typing import Any

from batchin.core.billing.limits import MICROS_PER_SECOND, KeyRevoked, RateDecision, period_micros
from batchin.core.context import RateLimitState
from batchin.errors import ServiceUnavailable

__all__ = ["KeyRevoked", "RedisRateLimiter"]

log = logging.getLogger("batchin.limits")

# KEYS[1] the bucket's TAT, KEYS[2] (optional) the key's revocation marker; ARGV limit, period (µs).
# Replies {allowed, remaining | retry_after_us, reset_us}; allowed is -1 for a revoked key.
# string.format('%d') keeps the stored TAT exact: µs since 1970 are past Lua's default 14 digits.
_SCRIPT = """
if #KEYS > 1 and redis.call('EXISTS', KEYS[2]) == 1 then return {-1, 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - (limit - 1) * period
if now < allow_at then return {0, allow_at - now, tat - now} end
local new_tat = tat + period
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((now + limit * period - new_tat) / period), new_tat - now}
"""

_REVOKED_TTL_SECONDS = 7 * 24 * 3600
_SOCKET_TIMEOUT_SECONDS = 2.0


class RedisRateLimiter:
    def __init__(self, url: str, namespace: str = "batchin") -> None:
        import redis.asyncio as redis_asyncio
        from redis.exceptions import RedisError

        self._redis: Any = redis_asyncio.from_url(
            url, socket_timeout=_SOCKET_TIMEOUT_SECONDS, socket_connect_timeout=_SOCKET_TIMEOUT_SECONDS
        )
        self._script: Any = self._redis.register_script(_SCRIPT)
        self._errors: type[Exception] = RedisError
        self._ns = namespace

    def _bucket_key(self, bucket: str, key_id: str | None) -> str:
        return f"{self._ns}:{{{key_id}}}:rl:{bucket}" if key_id else f"{self._ns}:rl:{bucket}"

    def _revoked_key(self, key_id: str) -> str:
        return f"{self._ns}:{{{key_id}}}:revoked"

    async def hit(self, bucket: str, limit_per_minute: int, *, key_id: str | None = None) -> RateDecision:
        keys = [self._bucket_key(bucket, key_id)]
        if key_id is not None:
            keys.append(self._revoked_key(key_id))
        try:
            allowed, value, reset_us = await self._script(
                keys=keys, args=[limit_per_minute, period_micros(limit_per_minute)]
            )
        except self._errors as exc:
            log.error("rate limiter: Redis unreachable (%s)", type(exc).__name__)
            raise ServiceUnavailable("The rate limiter is unavailable; retry shortly.") from None
        if allowed == -1:
            raise KeyRevoked(key_id)
        reset = reset_us / MICROS_PER_SECOND
        if allowed == 1:
            return RateDecision(True, 0.0, RateLimitState(limit_per_minute, int(value), reset))
        return RateDecision(False, value / MICROS_PER_SECOND, RateLimitState(limit_per_minute, 0, reset))

    async def mark_revoked(self, key_id: str) -> None:
        """Best effort: the database already holds the revocation, and every process re-reads it when its
        auth cache entry expires (seconds); failing the revoke call here would only hide that it worked."""
        try:
            await self._redis.set(self._revoked_key(key_id), 1, ex=_REVOKED_TTL_SECONDS)
        except self._errors as exc:
            log.error("rate limiter: could not publish revocation of key %s (%s)", key_id, type(exc).__name__)

    async def is_revoked(self, key_id: str) -> bool:
        return bool(await self._redis.exists(self._revoked_key(key_id)))

    async def close(self) -> None:
        await self._redis.aclose()
