"""Table definitions (SQLAlchemy Core). Money columns are integer micro-cents (see core/money.py)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

UUID_LEN = 36
TS = DateTime(timezone=True)

users = Table(
    "users",
    metadata,
    Column("id", String(UUID_LEN), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("balance_units", BigInteger, nullable=False, default=0),
    Column("created_at", TS, nullable=False),
    CheckConstraint("balance_units >= 0", name="balance_non_negative"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(UUID_LEN), primary_key=True),
    Column("user_id", String(UUID_LEN), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("key_prefix", String(32), nullable=False),
    Column("name", String(200), nullable=False),
    Column("rate_limit_rpm", Integer, nullable=False),
    Column("monthly_budget_cents", BigInteger, nullable=True),
    Column("is_active", Boolean, nullable=False, default=True),
    Column("created_at", TS, nullable=False),
    Column("last_used_at", TS, nullable=True),
    Column("revoked_at", TS, nullable=True),
    Index("ix_api_keys_user_id_created_at", "user_id", "created_at"),
)

# What each key has spent (settled + held) in one calendar month (UTC), checked against its budget.
key_spend = Table(
    "key_spend",
    metadata,
    Column("key_id", String(UUID_LEN), ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("spent_units", BigInteger, nullable=False, default=0),
)

reservations = Table(
    "reservations",
    metadata,
    Column("id", String(UUID_LEN), primary_key=True),
    Column("user_id", String(UUID_LEN), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("key_id", String(UUID_LEN), nullable=True),
    Column("month", String(7), nullable=False),
    Column("amount_units", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # held | settled | released
    Column("created_at", TS, nullable=False),
    Column("closed_at", TS, nullable=True),
    Index("ix_reservations_status_created_at", "status", "created_at"),
)

usage_logs = Table(
    "usage_logs",
    metadata,
    Column("id", String(UUID_LEN), primary_key=True),
    Column("request_id", String(64), nullable=False),
    Column("reservation_id", String(UUID_LEN), nullable=True, unique=True),
    Column("user_id", String(UUID_LEN), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("key_id", String(UUID_LEN), nullable=True),
    Column("model", String(200), nullable=False),
    Column("endpoint", String(64), nullable=False),
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("units", Float, nullable=False, default=0.0),
    Column("unit", String(32), nullable=False, default="tokens"),
    Column("cost_units", BigInteger, nullable=False),
    Column("latency_ms", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # succeeded | failed | cancelled
    Column("created_at", TS, nullable=False),
    # Listing is "this user's newest first, paged": one index serves it at any table size.
    Index("ix_usage_logs_user_created", "user_id", "created_at", "id"),
    Index("ix_usage_logs_request_id", "request_id"),
)

# Per (user, model) running totals, updated in the same transaction as each usage log,
# so summaries cost one small read however many logs there are.
usage_rollups = Table(
    "usage_rollups",
    metadata,
    Column("user_id", String(UUID_LEN), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("requests", BigInteger, nullable=False, default=0),
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("cost_units", BigInteger, nullable=False, default=0),
)

topups = Table(
    "topups",
    metadata,
    Column("id", String(UUID_LEN), primary_key=True),
    Column("user_id", String(UUID_LEN), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("source", String(16), nullable=False),  # stripe | usdc | admin
    Column("reference_id", String(255), nullable=False),
    Column("status", String(16), nullable=False),  # pending | completed | expired
    Column("note", Text, nullable=True),
    Column("created_at", TS, nullable=False),
    Column("completed_at", TS, nullable=True),
    UniqueConstraint("source", "reference_id", name="uq_topups_source_reference"),
    Index("ix_topups_user_created", "user_id", "created_at"),
)

# Stored files: generated outputs (images by URL, videos) and, later, uploads (purpose "batch").
# `storage_path` is relative to BATCHIN_DATA_DIR, so a moved data dir keeps working.
files = Table(
    "files",
    metadata,
    Column("id", String(64), primary_key=True),  # "file-<hex>"
    Column("user_id", String(UUID_LEN), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("filename", String(255), nullable=False),
    Column("content_type", String(100), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("storage_path", String(1024), nullable=False),
    Column("created_at", TS, nullable=False),
    Index("ix_files_user_created", "user_id", "created_at"),
)

# Video generation jobs: durable rows claimed by a worker (queued → in_progress → completed | failed;
# deleted hides a row but keeps it so billing recovery can still close its reservation).
video_jobs = Table(
    "video_jobs",
    metadata,
    Column("id", String(64), primary_key=True),  # "video_<hex>"
    Column("user_id", String(UUID_LEN), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("key_id", String(UUID_LEN), nullable=True),
    Column("request_id", String(64), nullable=False),
    Column("model", String(200), nullable=False),
    Column("prompt", Text, nullable=False),
    Column("seconds", Integer, nullable=False),
    Column("size", String(32), nullable=False),
    Column("seed", BigInteger, nullable=True),
    Column("status", String(16), nullable=False),  # queued | in_progress | completed | failed | deleted
    Column("progress", Integer, nullable=False, default=0),
    Column("reservation_id", String(UUID_LEN), nullable=False),
    Column("file_id", String(64), nullable=True),
    Column("worker_id", String(64), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("error_code", String(64), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("created_at", TS, nullable=False),
    Column("started_at", TS, nullable=True),
    Column("heartbeat_at", TS, nullable=True),
    Column("completed_at", TS, nullable=True),
    Index("ix_video_jobs_user_created", "user_id", "created_at"),
    Index("ix_video_jobs_status_created", "status", "created_at"),
)

# Traces (core/traces.py). One row per (tenant, trace): the same W3C trace id seen by two users is
# two rows, so no user can read another's. Listing is "this user's newest traces first".
trace_summaries = Table(
    "trace_summaries",
    metadata,
    Column("user_id", String(UUID_LEN), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("trace_id", String(32), primary_key=True),
    Column("run_id", String(64), nullable=True),
    Column("record_id", String(64), nullable=True),
    Column("route_id", String(200), nullable=True),
    Column("provider", String(200), nullable=True),
    Column("environment", String(200), nullable=True),
    Column("prompt_version_id", String(200), nullable=True),
    Column("model_id", String(200), nullable=True),
    Column("source", String(8), nullable=False),  # batchin | otlp: who first reported the trace
    Column("created_at", TS, nullable=False),
    Index("ix_trace_summaries_user_created", "user_id", "created_at", "trace_id"),
)

# Spans of our own calls (source batchin) and those sent to /v1/otlp/traces (source otlp).
# Attributes, events and links are kept in OTLP's JSON form so export loses nothing.
trace_spans = Table(
    "trace_spans",
    metadata,
    Column("user_id", String(UUID_LEN), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("trace_id", String(32), primary_key=True),
    Column("span_id", String(16), primary_key=True),
    Column("parent_span_id", String(16), nullable=True),
    Column("name", Text, nullable=False),
    Column("kind", Integer, nullable=False),  # OTLP SpanKind number
    Column("start_unix_nano", BigInteger, nullable=False),
    Column("end_unix_nano", BigInteger, nullable=False),
    Column("status_code", Integer, nullable=False),  # OTLP StatusCode number
    Column("status_message", Text, nullable=False),
    Column("trace_state", Text, nullable=False),
    Column("flags", BigInteger, nullable=False),
    Column("scope_name", String(200), nullable=False),
    Column("scope_version", String(200), nullable=False),
    Column("attributes", Text, nullable=False),
    Column("resource_attributes", Text, nullable=False),
    Column("events", Text, nullable=False),
    Column("links", Text, nullable=False),
    Column("source", String(8), nullable=False),
    Index("ix_trace_spans_user_start", "user_id", "start_unix_nano"),
)

# Verifiable audit (VaaS): public keys by id (old keys stay, so old records still verify), signed
# records, and the RFC 6962 transparency log over them (see core/audit_log.py).
vaas_keys = Table(
    "vaas_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("public_key", String(64), nullable=False),
    Column("created_at", TS, nullable=False),
)

vaas_records = Table(
    "vaas_records",
    metadata,
    Column("id", String(UUID_LEN), primary_key=True),
    Column("leaf_index", BigInteger, nullable=False, unique=True),
    Column("user_id", String(UUID_LEN), nullable=True),  # no FK: deleting a user must not drop records
    Column("key_id", String(32), nullable=False),
    Column("payload", Text, nullable=False),  # RFC 8785 canonical JSON: the signed bytes
    Column("signature", String(128), nullable=False),
    Column("created_at", TS, nullable=False),
)

# Perfect subtrees of the log: (level, idx) covers leaves [idx·2^level, (idx+1)·2^level).
vaas_log_nodes = Table(
    "vaas_log_nodes",
    metadata,
    Column("level", Integer, primary_key=True),
    Column("idx", BigInteger, primary_key=True),
    Column("hash", String(64), nullable=False),
)

# One row (id = 1): the log's size. Appenders update it first, which serialises them on both databases.
vaas_log_state = Table(
    "vaas_log_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tree_size", BigInteger, nullable=False),
)

vaas_checkpoints = Table(
    "vaas_checkpoints",
    metadata,
    Column("tree_size", BigInteger, primary_key=True),
    Column("root_hash", String(64), nullable=False),
    Column("timestamp", String(40), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("signature", String(128), nullable=False),
)
