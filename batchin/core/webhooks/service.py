"""Webhooks: signed (Standard Webhooks), SSRF-safe and durable event deliveries.

    check_url   when a user gives a webhook URL: http(s) to public addresses only (webhook_urls.py)
    enqueue     an event becomes a `webhook_deliveries` row with its id (`msg_...`) and exact body
                fixed, so every retry carries the same webhook-id and bytes
    worker      claims due rows, signs and POSTs them, retries with backoff (webhook_delivery.py)
    secrets     one per user, readable and rotatable, sealed at rest (webhook_secrets.py)

The body is shaped like OpenAI's webhook events:
`{"id": "msg_...", "object": "event", "type": "batch.completed", "created_at": <unix s>, "data": {...}}`.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select

from batchin.config import Settings
from batchin.core.clock import isoformat, utcnow
from batchin.core.webhooks.delivery import DeliveryWorker
from batchin.core.webhooks.secrets import StoredSecret, WebhookSecrets, load_or_create_key
from batchin.core.webhooks.urls import MAX_URL_LENGTH, Resolver, UrlPolicy
from batchin.protocol.webhooks import WebhookAttempt, WebhookSecret
from batchin.store.database import Database
from batchin.store.tables import webhook_attempts, webhook_deliveries
from batchin.store.upsert import upsert_insert

__all__ = ["WebhookService"]


class WebhookService:
    def __init__(self, settings: Settings, database: Database, *, resolver: Resolver | None = None) -> None:
        """`resolver` replaces DNS (tests); the key file is read (or made) here, at start-up."""
        key_file = settings.webhook_key_file or settings.data_dir / "webhooks" / "secret_key"
        self._db = database
        self._secrets = WebhookSecrets(database, load_or_create_key(key_file))
        self.policy = UrlPolicy(settings.webhook_allowed_hosts, resolver)
        self.worker = DeliveryWorker(settings, database, self._secrets, self.policy)
        self._insert = upsert_insert(database.dialect)

    # -- lifecycle (the app's lifespan calls these) --------------------------------------------

    async def start(self) -> None:
        await self.worker.start()

    async def stop(self) -> None:
        await self.worker.stop()

    # -- events ----------------------------------------------------------------------------------

    async def check_url(self, url: str) -> None:
        """InvalidRequest (param webhook_url) unless `url` may be called; see webhook_urls.py."""
        await self.policy.check(url)

    async def enqueue(
        self, user_id: str, event_type: str, data: dict[str, Any], url: str, subject_id: str
    ) -> None:
        """Queue one event for delivery. The same (subject, type) for a user is queued once: a caller
        that enqueues again after a crash sends nothing twice. The URL was checked by check_url when
        given, and is checked again before every attempt."""
        if not 0 < len(event_type) <= 64 or not 0 < len(subject_id) <= 128 or len(url) > MAX_URL_LENGTH:
            raise ValueError("webhook event type, subject or URL out of bounds")
        now = utcnow()
        event_id = f"msg_{secrets.token_hex(12)}"
        body = {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "created_at": int(now.timestamp()),
            "data": data,
        }
        async with self._db.write() as conn:
            await conn.execute(
                self._insert(webhook_deliveries)
                .values(
                    id=event_id,
                    user_id=user_id,
                    subject_id=subject_id,
                    event_type=event_type,
                    url=url,
                    payload=orjson.dumps(body).decode(),
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
                .on_conflict_do_nothing(
                    index_elements=[
                        webhook_deliveries.c.subject_id,
                        webhook_deliveries.c.event_type,
                        webhook_deliveries.c.user_id,
                    ]
                )
            )
        self.worker.wake()

    async def attempts_for(self, subject_id: str) -> list[dict[str, Any]]:
        """Every attempt at delivering the subject's events, oldest first (WebhookAttempt's fields)."""
        query = (
            select(webhook_attempts, webhook_deliveries.c.event_type)
            .join(webhook_deliveries, webhook_deliveries.c.id == webhook_attempts.c.delivery_id)
            .where(webhook_deliveries.c.subject_id == subject_id)
            .order_by(
                webhook_attempts.c.attempted_at, webhook_attempts.c.delivery_id, webhook_attempts.c.attempt
            )
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [
            WebhookAttempt(
                event_id=row["delivery_id"],
                type=row["event_type"],
                attempt=row["attempt"],
                attempted_at=_epoch(row["attempted_at"]),
                duration_ms=row["duration_ms"],
                status_code=row["status_code"],
                error=row["error"],
                next_retry_at=_epoch(row["next_retry_at"]) if row["next_retry_at"] is not None else None,
            ).model_dump()
            for row in rows
        ]

    # -- signing secrets -------------------------------------------------------------------------

    async def secret(self, user_id: str) -> str:
        return (await self._secrets.get(user_id)).secret

    async def rotate_secret(self, user_id: str) -> str:
        return (await self._secrets.rotate(user_id)).secret

    async def get_signing_secret(self, user_id: str) -> WebhookSecret:
        return _render(await self._secrets.get(user_id))

    async def rotate_signing_secret(self, user_id: str) -> WebhookSecret:
        return _render(await self._secrets.rotate(user_id))


def _render(stored: StoredSecret) -> WebhookSecret:
    return WebhookSecret(secret=stored.secret, created_at=isoformat(stored.created_at) or "")


def _epoch(moment: datetime) -> int:
    if moment.tzinfo is None:  # SQLite hands back naive datetimes that are UTC
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())
