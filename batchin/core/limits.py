"""Per-key requests-per-minute limits (GCRA: a leaky bucket kept as one timestamp per key).

A key with limit N may send N requests at once, then one every 60/N seconds; a refusal says exactly
when the next request will pass. In-process by default; `RedisRateLimiter` (limits_redis.py) holds
the same state in Redis so several server processes share one budget per key.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

from batchin.core.context import RateLimitState


class RateDecision:
    __slots__ = ("allowed", "retry_after", "state")

    def __init__(self, allowed: bool, retry_after: float, state: RateLimitState) -> None:
        self.allowed = allowed
        self.retry_after = retry_after
        self.state = state


class RateLimiter(Protocol):
    async def hit(self, bucket: str, limit_per_minute: int) -> RateDecision: ...

    async def mark_revoked(self, key_id: str) -> None: ...

    async def is_revoked(self, key_id: str) -> bool: ...

    async def close(self) -> None: ...


def gcra(tat: float, now: float, limit_per_minute: int) -> tuple[bool, float, float, RateLimitState]:
    """One GCRA step: returns (allowed, retry_after, new_tat, state). Times in seconds."""
    period = 60.0 / limit_per_minute
    tat = max(tat, now)
    allow_at = tat - (limit_per_minute - 1) * period
    if now < allow_at:
        remaining = 0
        state = RateLimitState(limit_per_minute, remaining, tat - now)
        return False, allow_at - now, tat, state
    new_tat = tat + period
    remaining = max(0, math.floor((now + limit_per_minute * period - new_tat) / period + 1e-9))
    return True, 0.0, new_tat, RateLimitState(limit_per_minute, remaining, new_tat - now)


class InMemoryRateLimiter:
    """Single-process limiter. Memory is bounded: idle buckets (fully refilled) are dropped."""

    def __init__(self, clock: Callable[[], float] | None = None, max_buckets: int = 100_000) -> None:
        self._clock: Callable[[], float] = clock or time.monotonic
        self._tat: dict[str, float] = {}
        self._revoked: set[str] = set()
        self._max_buckets = max_buckets

    async def hit(self, bucket: str, limit_per_minute: int) -> RateDecision:
        now = self._clock()
        allowed, retry_after, new_tat, state = gcra(self._tat.get(bucket, now), now, limit_per_minute)
        if allowed:
            if len(self._tat) >= self._max_buckets and bucket not in self._tat:
                self._evict_idle(now)
            self._tat[bucket] = new_tat
        return RateDecision(allowed, retry_after, state)

    def _evict_idle(self, now: float) -> None:
        for name in [name for name, tat in self._tat.items() if tat <= now]:
            del self._tat[name]

    async def mark_revoked(self, key_id: str) -> None:
        self._revoked.add(key_id)

    async def is_revoked(self, key_id: str) -> bool:
        return key_id in self._revoked

    async def close(self) -> None:
        return None
