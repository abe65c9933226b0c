"""Webhook signing secrets, deliveries and their attempts."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from batchin.store.tables.base import TS, UUID_LEN, metadata

# Webhooks (core/webhooks/service.py). Signing secrets sealed with the server's SecretBox key (never plain).
webhook_secrets = Table(
    "webhook_secrets",
    metadata,
    Column("user_id", String(UUID_LEN), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("sealed", Text, nullable=False),  # base64(nonce || ciphertext) of "user_id\nwhsec_..."
    Column("created_at", TS, nullable=False),
)

# One row per event to deliver; `payload` is the exact body, signed afresh on each attempt. A worker
# claims due rows (pending, or sending with an expired claim) by moving them to sending with
# next_attempt_at = the claim's expiry. One event per (subject, type, user): enqueueing it again
# (a finalizer re-run after a crash) sends nothing more.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(64), primary_key=True),  # "msg_<hex>", the webhook-id header
    Column("user_id", String(UUID_LEN), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("subject_id", String(128), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("url", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending | sending | delivered | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", TS, nullable=True),
    Column("worker_id", String(64), nullable=True),
    Column("created_at", TS, nullable=False),
    Column("completed_at", TS, nullable=True),
    UniqueConstraint("subject_id", "event_type", "user_id", name="uq_webhook_deliveries_subject_event"),
    Index("ix_webhook_deliveries_status_due", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_status_completed", "status", "completed_at"),  # the retention purge
)

# Every attempt, shown on its subject (a batch): when, the HTTP status or the error, how long, and
# when the next try is due (null after the last).
webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column(
        "delivery_id",
        String(64),
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("attempt", Integer, primary_key=True),
    Column("attempted_at", TS, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("next_retry_at", TS, nullable=True),
)
