"""Batches and their task rows."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from batchin.store.tables.base import TS, UUID_LEN, metadata

# Batches (core/batches/service.py): one row per batch, one row per task. Status names are OpenAI's
# (validating, in_progress, finalizing, completed, failed, expired, cancelling, cancelled) plus the
# seed's `pending` for an inline batch none of whose tasks has started. `claimed_by`/`lease_until`
# hold the batch while one process validates or finalizes it.
batches = Table(
    "batches",
    metadata,
    Column("id", String(UUID_LEN), primary_key=True),
    Column("user_id", String(UUID_LEN), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("key_id", String(UUID_LEN), nullable=False),  # the key that created it pays for every task
    Column("form", String(8), nullable=False),  # inline | file
    Column("endpoint", String(64), nullable=False),
    Column("input_file_id", String(64), nullable=True),
    Column("completion_window", String(16), nullable=False),
    Column("priority", String(8), nullable=False),  # high | low | fill
    Column("status", String(16), nullable=False),
    Column("webhook_url", Text, nullable=True),
    Column("webhook_state", String(16), nullable=True),  # pending (to enqueue) | enqueued
    Column("metadata_json", Text, nullable=True),
    Column("errors_json", Text, nullable=True),  # validation errors ({object: list, data: [...]})
    Column("total_tasks", Integer, nullable=False, default=0),
    # Final counts, written when the batch ends; while it runs they are counted from its tasks.
    Column("completed_tasks", Integer, nullable=False, default=0),
    Column("failed_tasks", Integer, nullable=False, default=0),
    Column("output_file_id", String(64), nullable=True),
    Column("error_file_id", String(64), nullable=True),
    Column("request_id", String(64), nullable=False),
    Column("claimed_by", String(64), nullable=True),
    Column("lease_until", BigInteger, nullable=True),  # unix ms
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("in_progress_at", TS, nullable=True),
    Column("finalizing_at", TS, nullable=True),
    Column("completed_at", TS, nullable=True),
    Column("failed_at", TS, nullable=True),
    Column("expired_at", TS, nullable=True),
    Column("cancelling_at", TS, nullable=True),
    Column("cancelled_at", TS, nullable=True),
    Index("ix_batches_user_created", "user_id", "created_at", "id"),
    Index("ix_batches_status", "status"),
)

# Tasks are claimed by workers in (priority, next_attempt_at, id) order among `pending` rows; times
# on this hot table are unix milliseconds (integers compare the same way on both databases). The
# task's reservation for attempt n has a deterministic id (core/batches/store.py), so a restart can
# release what a killed attempt held; its result and its charge are written in one transaction.
batch_tasks = Table(
    "batch_tasks",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("batch_id", String(UUID_LEN), ForeignKey("batches.id", ondelete="CASCADE"), nullable=False),
    Column("line", Integer, nullable=False),  # 0-based position in the input
    Column("custom_id", Text, nullable=False),
    Column("endpoint", String(32), nullable=False),
    Column("model", String(200), nullable=False),
    Column("body", Text, nullable=False),  # the request body (JSON)
    Column("priority", SmallInteger, nullable=False),  # admission Priority: 1 high, 2 low, 3 fill
    Column("status", String(12), nullable=False),  # pending running completed failed cancelled expired
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),  # claims so far
    Column("failures", Integer, nullable=False, default=0),  # transient failures and lost workers
    Column("claimed_by", String(64), nullable=True),
    Column("lease_until", BigInteger, nullable=True),
    Column("status_code", Integer, nullable=True),
    Column("response", Text, nullable=True),  # the response body (JSON), success or error
    Column("error_code", String(64), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("cost_units", BigInteger, nullable=True),
    Column("finished_at", BigInteger, nullable=True),
    Index("ix_batch_tasks_claim", "status", "priority", "next_attempt_at", "id"),
    Index("ix_batch_tasks_batch_status", "batch_id", "status"),
    UniqueConstraint("batch_id", "line", name="uq_batch_tasks_batch_line"),
)
