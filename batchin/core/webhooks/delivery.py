"""The webhook delivery worker: started and stopped with the app (WebhookService.start/stop).

Deliveries are rows (`webhook_deliveries`). A worker claims due rows atomically (SQLite: the write
lock of BEGIN IMMEDIATE; PostgreSQL: FOR UPDATE SKIP LOCKED) by moving them to `sending` under its
id, with `next_attempt_at` set to when its claim expires, so two workers or processes never send
the same attempt at once. Each attempt re-checks the URL against the SSRF policy and connects only
to the addresses that passed, signs the stored body afresh (Standard Webhooks), and POSTs it without
following redirects. A 2xx delivers; anything else is recorded and retried on the configured
schedule (with jitter) until it runs out, then the delivery is `failed`.

A clean stop hands the rows it holds back at once; a crashed worker's rows come back when their
claim expires, and the lost attempt is recorded as such. Every finish is conditional on the row
still being this worker's claim, so nothing is recorded twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from sqlalchemy import insert, select, update

from batchin.config import Settings
from batchin.core.clock import utcnow
from batchin.core.webhooks.secrets import WebhookSecrets
from batchin.core.webhooks.signing import signed_headers
from batchin.core.webhooks.urls import Target, UrlPolicy
from batchin.core.worker import DurableWorker, new_worker_id
from batchin.errors import InvalidRequest
from batchin.store.claiming import skip_locked
from batchin.store.database import Database
from batchin.store.tables import webhook_attempts, webhook_deliveries

__all__ = ["DeliveryWorker"]

log = logging.getLogger("batchin.webhooks")

# A claim outlives the longest attempt (resolve + connect + response + recording) by this much, so
# a live worker never loses its claim to another.
_CLAIM_GRACE_SECONDS = 60.0
_LOST_ATTEMPT = "the delivery worker stopped during this attempt; its outcome is unknown"
_USER_AGENT = "BatchIn-Webhooks/1"
_MAX_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class _Claim:
    id: str
    user_id: str
    url: str
    payload: str
    attempt: int  # 1-based number of the attempt this claim makes


@dataclass(frozen=True, slots=True)
class _Outcome:
    started: datetime
    duration_ms: int
    status_code: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class DeliveryWorker(DurableWorker[_Claim]):
    def __init__(
        self, settings: Settings, database: Database, secrets_store: WebhookSecrets, policy: UrlPolicy
    ) -> None:
        super().__init__(
            name="webhook-worker",
            log=log,
            worker_id=new_worker_id(),
            poll_seconds=settings.webhook_poll_seconds,
            max_in_flight=settings.webhook_concurrency,
        )
        self._settings = settings
        self._db = database
        self._secrets = secrets_store
        self._policy = policy
        self._schedule = list(settings.webhook_retry_schedule_seconds)
        self.max_attempts = len(self._schedule) + 1
        self._claim_seconds = settings.webhook_timeout_seconds + _CLAIM_GRACE_SECONDS

    async def stop(self) -> None:
        await super().stop()
        # A clean stop hands its unfinished attempts back at once, unnumbered (a crash waits for the
        # claims to expire). A receiver may have seen one already: the same webhook-id lets it tell.
        async with self._db.write() as conn:
            await conn.execute(
                update(webhook_deliveries)
                .where(
                    webhook_deliveries.c.worker_id == self.worker_id, webhook_deliveries.c.status == "sending"
                )
                .values(
                    status="pending",
                    worker_id=None,
                    attempts=webhook_deliveries.c.attempts - 1,
                    next_attempt_at=utcnow(),
                )
            )

    async def run_once(self) -> int:
        """Claim what is due (up to the concurrency) and make those attempts; returns how many."""
        claims = await self._claim(self._settings.webhook_concurrency)
        await asyncio.gather(*(self._attempt(claim) for claim in claims))
        return len(claims)

    # -- the loop (DurableWorker): up to webhook_concurrency attempts at once ----------------------

    async def _claim_items(self, limit: int) -> list[_Claim]:
        return await self._claim(limit)

    async def _process(self, claim: _Claim) -> None:
        await self._attempt(claim)

    def _work_finished(self) -> None:
        self.wake()  # its retry may be due at once (a schedule of zeros)

    async def _claim(self, limit: int) -> list[_Claim]:
        now = utcnow()
        due = (
            select(webhook_deliveries)
            .where(
                webhook_deliveries.c.status.in_(("pending", "sending")),
                webhook_deliveries.c.next_attempt_at <= now,
            )
            .order_by(webhook_deliveries.c.next_attempt_at, webhook_deliveries.c.id)
            .limit(limit)
        )
        due = skip_locked(due)
        claims: list[_Claim] = []
        async with self._db.write() as conn:
            for row in (await conn.execute(due)).mappings().all():
                attempts = row["attempts"]
                if row["status"] == "sending":  # its worker died mid-attempt
                    await self._record_lost(conn, row["id"], attempts, now)
                if attempts >= self.max_attempts:
                    await conn.execute(
                        update(webhook_deliveries)
                        .where(webhook_deliveries.c.id == row["id"])
                        .values(status="failed", worker_id=None, next_attempt_at=None, completed_at=now)
                    )
                    continue
                await conn.execute(
                    update(webhook_deliveries)
                    .where(webhook_deliveries.c.id == row["id"])
                    .values(
                        status="sending",
                        worker_id=self.worker_id,
                        attempts=attempts + 1,
                        next_attempt_at=now + timedelta(seconds=self._claim_seconds),
                    )
                )
                claims.append(_Claim(row["id"], row["user_id"], row["url"], row["payload"], attempts + 1))
        return claims

    async def _record_lost(self, conn: Any, delivery_id: str, attempt: int, now: datetime) -> None:
        await conn.execute(
            insert(webhook_attempts).values(
                delivery_id=delivery_id,
                attempt=attempt,
                attempted_at=now,
                duration_ms=0,
                status_code=None,
                error=_LOST_ATTEMPT,
                next_retry_at=now,
            )
        )

    # -- one attempt -----------------------------------------------------------------------------

    async def _attempt(self, claim: _Claim) -> None:
        try:
            outcome = await self._send(claim)
            await self._finish(claim, outcome)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook delivery %s: attempt %d crashed", claim.id, claim.attempt)

    async def _send(self, claim: _Claim) -> _Outcome:
        started, clock = utcnow(), time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        try:
            target = await self._policy.check(claim.url)  # again: DNS may answer differently now
            secret = (await self._secrets.get(claim.user_id)).secret
            body = claim.payload.encode()
            headers = signed_headers(secret, claim.id, int(time.time()), body)
            headers.update({"content-type": "application/json", "user-agent": _USER_AGENT})
            status_code = await self._post(target, headers, body)
        except InvalidRequest as exc:
            error = f"refused: {exc.message}"
        except TimeoutError:
            error = f"timed out after {self._settings.webhook_timeout_seconds:g}s"
        except (aiohttp.ClientError, OSError) as exc:
            error = _describe(exc)
        except Exception as exc:  # ours, not the receiver's (e.g. an unreadable key): retried later
            log.exception("webhook delivery %s: attempt %d failed on our side", claim.id, claim.attempt)
            error = f"internal error ({type(exc).__name__})"
        duration_ms = int((time.perf_counter() - clock) * 1000)
        return _Outcome(started, duration_ms, status_code, error)

    async def _post(self, target: Target, headers: dict[str, str], body: bytes) -> int:
        # A connector per attempt, resolving only to the checked addresses: no pooled connection or
        # cached DNS answer from elsewhere is reused.
        connector = aiohttp.TCPConnector(
            resolver=_PinnedResolver(target), force_close=True, limit=1, use_dns_cache=False
        )
        timeout = aiohttp.ClientTimeout(total=self._settings.webhook_timeout_seconds)
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session,
            session.post(target.url, data=body, headers=headers, allow_redirects=False) as response,
        ):
            return response.status

    async def _finish(self, claim: _Claim, outcome: _Outcome) -> None:
        now = utcnow()
        retry_at: datetime | None = None
        if outcome.delivered:
            values: dict[str, Any] = {"status": "delivered", "next_attempt_at": None, "completed_at": now}
        elif claim.attempt < self.max_attempts:
            retry_at = now + timedelta(seconds=self._delay(claim.attempt))
            values = {"status": "pending", "next_attempt_at": retry_at}
        else:
            values = {"status": "failed", "next_attempt_at": None, "completed_at": now}
        async with self._db.write() as conn:
            mine = await conn.execute(
                update(webhook_deliveries)
                .where(
                    webhook_deliveries.c.id == claim.id,
                    webhook_deliveries.c.worker_id == self.worker_id,
                    webhook_deliveries.c.status == "sending",
                    webhook_deliveries.c.attempts == claim.attempt,
                )
                .values(worker_id=None, **values)
            )
            if mine.rowcount != 1:  # the claim expired and another worker took the row over
                log.warning(
                    "webhook delivery %s: attempt %d finished after its claim", claim.id, claim.attempt
                )
                return
            await conn.execute(
                insert(webhook_attempts).values(
                    delivery_id=claim.id,
                    attempt=claim.attempt,
                    attempted_at=outcome.started,
                    duration_ms=outcome.duration_ms,
                    status_code=outcome.status_code,
                    error=outcome.error,
                    next_retry_at=retry_at,
                )
            )
        if retry_at is not None:
            self._wake_in((retry_at - now).total_seconds())  # not left to the idle poll
        log.info(
            "webhook delivery %s: attempt %d → %s",
            claim.id,
            claim.attempt,
            outcome.status_code if outcome.error is None else "error",
        )

    def _delay(self, attempt: int) -> float:
        """Seconds before attempt `attempt + 1`: the schedule's entry, spread by ± jitter."""
        base = self._schedule[attempt - 1]
        jitter = self._settings.webhook_retry_jitter
        # Jitter spreads retries of many events failing together; it needs no cryptographic randomness.
        return base * random.uniform(1 - jitter, 1 + jitter)  # noqa: S311


class _PinnedResolver(AbstractResolver):
    """Answers only with the addresses the SSRF check passed, so the connection goes to them. It
    serves one request to one host (redirects are not followed, no proxy is used), so it need not
    compare the name it is asked for (which aiohttp may have IDNA-encoded)."""

    def __init__(self, target: Target) -> None:
        self._target = target

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port or self._target.port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self._target.addresses
        ]

    async def close(self) -> None:
        return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = os.strerror(exc.os_error.errno) if exc.os_error.errno else str(exc.os_error)
        text = f"could not connect: {reason}"
    else:
        message = str(exc)
        text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text[:_MAX_ERROR_CHARS]
