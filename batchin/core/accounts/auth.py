"""Authentication and per-key admission, the one mechanism every surface calls.

`admit(secret)` resolves a bearer secret to its key and user, then applies the key's RPM limit.
Resolved keys are cached for `auth_cache_seconds` so the hot path does not touch the database
(not those of an account whose email is still unverified: verifying takes effect at once);
revoking a key evicts it here at once and, with Redis, in every other process on its next request.
When an entry expires under load, the requests that miss it together share one read: at c=16 each
expiry otherwise cost sixteen reads through SQLAlchemy (~1.5 ms of event loop CPU each).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace

from sqlalchemy import select, update

from batchin.core.accounts.keys import hash_secret, hashes_match, looks_like_key
from batchin.core.accounts.principals import principal_of
from batchin.core.billing.limits import KeyRevoked, RateLimiter
from batchin.core.clock import utcnow
from batchin.core.context import Principal, RateLimitState
from batchin.errors import RateLimited, Unauthorized
from batchin.store.database import Database
from batchin.store.tables import api_keys, users

_LAST_USED_RESOLUTION_SECONDS = 60.0
_INVALID_KEY = "Invalid or missing API key. Send Authorization: Bearer <API_KEY>."


@dataclass(slots=True)
class _Cached:
    principal: Principal
    expires_at: float


class AuthService:
    def __init__(self, database: Database, limiter: RateLimiter, *, cache_seconds: float) -> None:
        self._db = database
        self._limiter = limiter
        self._cache_seconds = cache_seconds
        self._cache: dict[str, _Cached] = {}
        self._loading: dict[str, asyncio.Task[Principal]] = {}
        self._revocations = 0  # a read that a revocation overtook must not refill the cache
        self._last_touch: dict[str, float] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def authenticate(self, secret: str | None) -> Principal:
        if not secret or not looks_like_key(secret):
            raise Unauthorized(_INVALID_KEY)
        digest = hash_secret(secret)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached.expires_at > now:
            principal = cached.principal
        else:
            principal = await self._shared_load(digest)
        self._touch(principal.key_id, now)
        return principal

    async def _shared_load(self, digest: str) -> Principal:
        """One read of a key at a time: a caller that misses while a read of the same key is under
        way waits for that read. The read is a task (shielded) so that a caller cancelled while it
        waits (a client gone) cancels nobody else's wait."""
        loading = self._loading.get(digest)
        if loading is None:
            loading = asyncio.get_running_loop().create_task(self._load_and_cache(digest, self._revocations))
            self._loading[digest] = loading
            loading.add_done_callback(lambda done: self._loaded(digest, done))
        return await asyncio.shield(loading)

    def _loaded(self, digest: str, done: asyncio.Task[Principal]) -> None:
        if self._loading.get(digest) is done:
            del self._loading[digest]
        if not done.cancelled():
            done.exception()  # retrieved here too: every waiter may have been cancelled meanwhile

    async def _load_and_cache(self, digest: str, revocations: int) -> Principal:
        principal = await self._load(digest)
        # An unverified account's key is read afresh each time, so following the emailed link
        # takes effect at once in every process (its keys can make no paid call meanwhile).
        if principal.verified and revocations == self._revocations:
            self._cache[digest] = _Cached(principal, time.monotonic() + self._cache_seconds)
        return principal

    async def admit(self, secret: str | None) -> tuple[Principal, RateLimitState]:
        """Authenticate, then count one request against the key's RPM limit."""
        principal = await self.authenticate(secret)
        try:
            decision = await self._limiter.hit(
                f"key:{principal.key_id}", principal.rate_limit_rpm, key_id=principal.key_id
            )
        except KeyRevoked:
            self._cache.pop(hash_secret(secret or ""), None)
            raise Unauthorized(_INVALID_KEY) from None
        if not decision.allowed:
            raise RateLimited(
                f"Rate limit of {principal.rate_limit_rpm} requests per minute reached for this API key; "
                f"retry after {decision.retry_after:.1f}s.",
                retry_after=decision.retry_after,
                headers=decision.state.headers(),
            )
        return principal, decision.state

    async def forget_key(self, key_id: str) -> None:
        """Called when a key is revoked: refuse it from the next request on, in every process."""
        for digest in [d for d, c in self._cache.items() if c.principal.key_id == key_id]:
            del self._cache[digest]
        self._revocations += 1
        await self._limiter.mark_revoked(key_id)

    async def _load(self, digest: str) -> Principal:
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        api_keys.c.id,
                        api_keys.c.user_id,
                        api_keys.c.key_hash,
                        api_keys.c.key_prefix,
                        api_keys.c.rate_limit_rpm,
                        api_keys.c.monthly_budget_cents,
                        api_keys.c.scopes,
                        api_keys.c.models,
                        api_keys.c.regions,
                        users.c.email_verified,
                        users.c.currency,
                    )
                    .join(users, users.c.id == api_keys.c.user_id)
                    .where(api_keys.c.key_hash == digest, api_keys.c.is_active.is_(True))
                )
            ).first()
        if row is None or not hashes_match(row.key_hash, digest):
            raise Unauthorized(_INVALID_KEY)
        principal = principal_of(row)
        return principal if row.email_verified else replace(principal, verified=False)

    def _touch(self, key_id: str, now: float) -> None:
        # last_used_at is informational: write it at most once a minute per key, off the request path.
        if now - self._last_touch.get(key_id, -1e9) < _LAST_USED_RESOLUTION_SECONDS:
            return
        self._last_touch[key_id] = now
        task = asyncio.get_running_loop().create_task(self._write_last_used(key_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _write_last_used(self, key_id: str) -> None:
        async with self._db.write() as conn:
            await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=utcnow()))

    async def drain(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
