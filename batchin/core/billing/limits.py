"""Per-key requests-per-minute limits (GCRA: a leaky bucket kept as one timestamp per bucket).

A bucket with limit N may take N requests at once, then one every 60/N seconds; a refusal says exactly
when the next request will pass. Time is counted in integer microseconds so that a bucket refills at
exactly the instant the arithmetic promises (float sums drift by an ulp and refuse a request that is on
time), and so that the in-process limiter and the Redis script (limits_redis.py) agree to the unit.

`hit(bucket, limit, key_id=...)` names the API key explicitly rather than deriving it from the bucket
name: a bucket is any budget (per key today, per key and region tomorrow) while revocation belongs to
the key, and parsing one out of the other silently stops checking revocation when a name changes shape.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from batchin.core.context import RateLimitState

MICROS_PER_SECOND = 1_000_000
MICROS_PER_MINUTE = 60 * MICROS_PER_SECOND


class KeyRevoked(Exception):
    """The key was revoked (possibly by another process); raised by `RateLimiter.hit`."""


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    retry_after: float  # seconds until a refused request would pass; 0.0 when allowed
    state: RateLimitState


class RateLimiter(Protocol):
    async def hit(self, bucket: str, limit_per_minute: int, *, key_id: str | None = None) -> RateDecision:
        """Count one request against `bucket`; raise KeyRevoked first when `key_id` was revoked."""
        ...

    async def mark_revoked(self, key_id: str) -> None: ...

    async def is_revoked(self, key_id: str) -> bool: ...

    async def close(self) -> None: ...


def period_micros(limit_per_minute: int) -> int:
    if limit_per_minute < 1:
        raise ValueError(f"a rate limit must be at least 1 request per minute, not {limit_per_minute}")
    return MICROS_PER_MINUTE // limit_per_minute


def gcra(tat: int | None, now: int, limit_per_minute: int) -> tuple[RateDecision, int]:
    """One GCRA step on the bucket's theoretical arrival time `tat` (None: a fresh bucket).

    Returns the decision and the TAT to store (unchanged when refused: a refusal costs nothing).
    """
    period = period_micros(limit_per_minute)
    tat = now if tat is None or tat < now else tat
    allow_at = tat - (limit_per_minute - 1) * period
    if now < allow_at:
        state = RateLimitState(limit_per_minute, 0, (tat - now) / MICROS_PER_SECOND)
        return RateDecision(False, (allow_at - now) / MICROS_PER_SECOND, state), tat
    new_tat = tat + period
    remaining = (now + limit_per_minute * period - new_tat) // period
    state = RateLimitState(limit_per_minute, remaining, (new_tat - now) / MICROS_PER_SECOND)
    return RateDecision(True, 0.0, state), new_tat


class InMemoryRateLimiter:
    """Single-process limiter. Memory is bounded: idle buckets (fully refilled) are dropped."""

    def __init__(self, clock: Callable[[], float] | None = None, max_buckets: int = 100_000) -> None:
        self._clock: Callable[[], float] = clock or time.monotonic
        self._tat: dict[str, int] = {}
        self._revoked: set[str] = set()
        self._max_buckets = max_buckets

    async def hit(self, bucket: str, limit_per_minute: int, *, key_id: str | None = None) -> RateDecision:
        if key_id is not None and key_id in self._revoked:
            raise KeyRevoked(key_id)
        now = round(self._clock() * MICROS_PER_SECOND)
        decision, new_tat = gcra(self._tat.get(bucket), now, limit_per_minute)
        if decision.allowed:
            if len(self._tat) >= self._max_buckets and bucket not in self._tat:
                self._evict_idle(now)
            self._tat[bucket] = new_tat
        return decision

    def _evict_idle(self, now: int) -> None:
        for name in [name for name, tat in self._tat.items() if tat <= now]:
            del self._tat[name]

    async def mark_revoked(self, key_id: str) -> None:
        self._revoked.add(key_id)

    async def is_revoked(self, key_id: str) -> bool:
        return key_id in self._revoked

    async def close(self) -> None:
        return None
