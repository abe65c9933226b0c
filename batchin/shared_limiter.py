"""The rate limiter every API process of `batchin serve --workers N` shares when no Redis is set:
one in-memory limiter in the supervising process, reached over its relay (models/engine_relay.py).
A key's RPM is then one budget across the N processes, and a key revoked through one process is
refused by all of them on their next request, as the Redis limiter does across replicas."""

from __future__ import annotations

from batchin.core.billing.limits import InMemoryRateLimiter, KeyRevoked, RateDecision
from batchin.models.engine_client import EngineClient
from batchin.models.engine_relay import RelayAddress

__all__ = ["LIMITER_NAME", "LimiterEndpoint", "RelayedRateLimiter"]

LIMITER_NAME = "batchin:limiter"  # its name on the relay; no model id has a colon


class LimiterEndpoint:
    """The supervisor's side. A revoked key comes back as None: only BatchInErrors cross the wire
    whole, and KeyRevoked is not one."""

    def __init__(self) -> None:
        self._limiter = InMemoryRateLimiter()

    async def hit(self, bucket: str, limit_per_minute: int, key_id: str | None) -> RateDecision | None:
        try:
            return await self._limiter.hit(bucket, limit_per_minute, key_id=key_id)
        except KeyRevoked:
            return None

    async def mark_revoked(self, key_id: str) -> None:
        await self._limiter.mark_revoked(key_id)

    async def is_revoked(self, key_id: str) -> bool:
        return await self._limiter.is_revoked(key_id)


class RelayedRateLimiter:
    """An API process's side: the RateLimiter protocol, each operation one round trip."""

    def __init__(self, client: EngineClient) -> None:
        self._client = client

    @classmethod
    async def connect(cls, relay: RelayAddress) -> RelayedRateLimiter:
        return cls(await EngineClient.connect(relay, LIMITER_NAME, load_timeout=30.0))

    async def hit(self, bucket: str, limit_per_minute: int, *, key_id: str | None = None) -> RateDecision:
        decision: RateDecision | None = await self._client.call("hit", bucket, limit_per_minute, key_id)
        if decision is None:
            raise KeyRevoked(key_id or "")
        return decision

    async def mark_revoked(self, key_id: str) -> None:
        await self._client.call("mark_revoked", key_id)

    async def is_revoked(self, key_id: str) -> bool:
        return bool(await self._client.call("is_revoked", key_id))

    async def close(self) -> None:
        await self._client.close()
