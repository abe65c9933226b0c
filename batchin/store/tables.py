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
    SmallInteger,
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

# Webhooks (core/webhooks.py). Signing secrets sealed with the server's SecretBox key (never plain).
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

# Batches (core/batches.py): one row per batch, one row per task. Status names are OpenAI's
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
# task's reservation for attempt n has a deterministic id (core/batch_store.py), so a restart can
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

# Prompt registry (core/prompts.py). Everything is per tenant: registry and version ids are the
# caller's names ("support", "support@v2"), unique within one user. The `promoted` label lives on
# the registry row; every move of it is a signed row in prompt_label_moves.
prompt_registries = Table(
    "prompt_registries",
    metadata,
    Column("user_id", String(UUID_LEN), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("registry_id", String(100), primary_key=True),
    Column("display_name", String(200), nullable=False),
    Column("source", String(16), nullable=False),  # auto_backfill | registered (how it first appeared)
    Column("promoted_version_id", String(200), nullable=True),
    Column("latest_version_id", String(200), nullable=True),
    Column("total_runs", BigInteger, nullable=False, default=0),
    Column("created_at", TS, nullable=False),
    Index("ix_prompt_registries_user_created", "user_id", "created_at"),
)

prompt_versions = Table(
    "prompt_versions",
    metadata,
    Column("user_id", String(UUID_LEN), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("version_id", String(200), primary_key=True),
    Column("registry_id", String(100), nullable=False),
    Column("source", String(16), nullable=False),  # auto_backfill | registered
    Column("status", String(16), nullable=False),  # observed | promoted | candidate | retired
    Column("template", Text, nullable=True),  # the system prompt (registered: with {{variables}})
    Column("variables", Text, nullable=False),  # JSON list of variable names
    Column("total_runs", BigInteger, nullable=False, default=0),
    Column("key_id", String(UUID_LEN), nullable=True),  # the key that created it pays its experiments
    Column("created_at", TS, nullable=False),
    Column("last_seen_at", TS, nullable=True),
    Index("ix_prompt_versions_user_registry", "user_id", "registry_id", "created_at"),
)

# Each move of a registry's `promoted` label: who, when, why, signed with the audit key over the
# RFC 8785 form of `payload` (verifiable like an audit record, by key id).
prompt_label_moves = Table(
    "prompt_label_moves",
    metadata,
    Column("id", String(UUID_LEN), primary_key=True),
    Column("user_id", String(UUID_LEN), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("registry_id", String(100), nullable=False),
    Column("payload", Text, nullable=False),  # canonical JSON: the signed bytes
    Column("signature", String(128), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("created_at", TS, nullable=False),
    Index("ix_prompt_label_moves_user_registry", "user_id", "registry_id", "created_at"),
)

# A bounded sample of each version's recent runs (newest kept), the inputs experiments replay.
prompt_samples = Table(
    "prompt_samples",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("user_id", String(UUID_LEN), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("version_id", String(200), nullable=False),
    Column("model_id", String(200), nullable=False),
    Column("messages", Text, nullable=False),  # JSON [{role, content}]
    Column("output_text", Text, nullable=False),
    Column("max_tokens", Integer, nullable=False),
    Column("temperature", Float, nullable=False),
    Column("latency_ms", Integer, nullable=False),  # engine time: admitted → finished
    Column("cost_units", BigInteger, nullable=False),
    Column("created_at", TS, nullable=False),
    Index("ix_prompt_samples_user_version", "user_id", "version_id", "id"),
)

# Experiments: durable rows a worker claims (claimed_by + lease_until, unix ms) and resumes; each
# replayed sample is a prompt_replays row, so a restart repeats only unfinished samples.
prompt_experiments = Table(
    "prompt_experiments",
    metadata,
    Column("id", String(64), primary_key=True),  # pexp_<hex>
    Column("user_id", String(UUID_LEN), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("key_id", String(UUID_LEN), nullable=True),  # pays for the replays
    Column("registry_id", String(100), nullable=False),
    Column("baseline_version_id", String(200), nullable=False),
    Column("candidate_version_id", String(200), nullable=False),
    Column("judge", String(32), nullable=False),
    Column("sample_size", Integer, nullable=False),
    Column("trigger", String(16), nullable=False),  # auto | manual
    Column("status", String(16), nullable=False),  # queued | running | passed | failed | error
    Column("promotion_status", String(16), nullable=False),  # pending | promoted | rejected
    Column("reason", Text, nullable=True),
    Column("sample_count", Integer, nullable=False, default=0),
    Column("pass_rate", Float, nullable=True),
    Column("claimed_by", String(64), nullable=True),
    Column("lease_until", BigInteger, nullable=True),
    Column("created_at", TS, nullable=False),
    Column("started_at", TS, nullable=True),
    Column("finished_at", TS, nullable=True),
    Index("ix_prompt_experiments_user_created", "user_id", "created_at"),
    Index("ix_prompt_experiments_status", "status"),
)

prompt_replays = Table(
    "prompt_replays",
    metadata,
    Column(
        "experiment_id", String(64), ForeignKey("prompt_experiments.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("position", Integer, primary_key=True),
    Column("model_id", String(200), nullable=False),
    Column("messages", Text, nullable=False),  # the baseline run's input (copied: samples rotate)
    Column("max_tokens", Integer, nullable=False),
    Column("status", String(12), nullable=False),  # pending | done | error
    Column("baseline_recorded", Boolean, nullable=False),  # the recorded output was deterministic
    Column("baseline_output", Text, nullable=True),
    Column("baseline_latency_ms", Integer, nullable=True),
    Column("baseline_cost_units", BigInteger, nullable=True),
    Column("candidate_output", Text, nullable=True),
    Column("candidate_latency_ms", Integer, nullable=True),
    Column("candidate_cost_units", BigInteger, nullable=True),
    Column("similarity", Float, nullable=True),
    Column("passed", Boolean, nullable=True),
    Column("error", Text, nullable=True),
)

# One regression report per finished experiment: the judge's verdict over its samples.
prompt_regressions = Table(
    "prompt_regressions",
    metadata,
    Column("id", String(64), primary_key=True),  # preg_<hex>
    Column(
        "experiment_id",
        String(64),
        ForeignKey("prompt_experiments.id", ondelete="CASCADE"),
        nullable=False,
        unique=True,
    ),
    Column("user_id", String(UUID_LEN), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("registry_id", String(100), nullable=False),
    Column("baseline_version_id", String(200), nullable=False),
    Column("candidate_version_id", String(200), nullable=False),
    Column("status", String(16), nullable=False),  # passed | failed
    Column("judge", String(32), nullable=False),
    Column("sample_count", Integer, nullable=False),
    Column("pass_count", Integer, nullable=False),
    Column("fail_count", Integer, nullable=False),
    Column("avg_similarity", Float, nullable=False),
    Column("baseline_avg_latency_ms", Integer, nullable=False),
    Column("candidate_avg_latency_ms", Integer, nullable=False),
    Column("baseline_avg_cost_units", BigInteger, nullable=False),
    Column("candidate_avg_cost_units", BigInteger, nullable=False),
    Column("created_at", TS, nullable=False),
    Index("ix_prompt_regressions_user_created", "user_id", "created_at"),
)
