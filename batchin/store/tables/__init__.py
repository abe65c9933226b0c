"""Table definitions (SQLAlchemy Core), one module per concept; imported from here. Money columns
are integer micro-cents (see core/billing/money.py)."""

from __future__ import annotations

from batchin.store.tables.accounts import (
    api_keys,
    key_spend,
    reservations,
    storage_usage,
    topups,
    usage_logs,
    usage_rollups,
    users,
)
from batchin.store.tables.audit import (
    vaas_checkpoints,
    vaas_keys,
    vaas_log_nodes,
    vaas_log_state,
    vaas_records,
)
from batchin.store.tables.base import TS, UUID_LEN, metadata
from batchin.store.tables.batches import batch_tasks, batches
from batchin.store.tables.console import console_sessions, signup_invites
from batchin.store.tables.maintenance import maintenance_jobs
from batchin.store.tables.media import files, video_jobs
from batchin.store.tables.prompts import (
    prompt_experiments,
    prompt_label_moves,
    prompt_registries,
    prompt_regressions,
    prompt_replays,
    prompt_samples,
    prompt_versions,
)
from batchin.store.tables.traces import trace_call_spans, trace_spans, trace_summaries
from batchin.store.tables.webhooks import webhook_attempts, webhook_deliveries, webhook_secrets

__all__ = [
    "TS",
    "UUID_LEN",
    "api_keys",
    "batch_tasks",
    "batches",
    "console_sessions",
    "files",
    "key_spend",
    "maintenance_jobs",
    "metadata",
    "prompt_experiments",
    "prompt_label_moves",
    "prompt_registries",
    "prompt_regressions",
    "prompt_replays",
    "prompt_samples",
    "prompt_versions",
    "reservations",
    "signup_invites",
    "storage_usage",
    "topups",
    "trace_call_spans",
    "trace_spans",
    "trace_summaries",
    "usage_logs",
    "usage_rollups",
    "users",
    "vaas_checkpoints",
    "vaas_keys",
    "vaas_log_nodes",
    "vaas_log_state",
    "vaas_records",
    "video_jobs",
    "webhook_attempts",
    "webhook_deliveries",
    "webhook_secrets",
]
