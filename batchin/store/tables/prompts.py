"""The prompt registry: registries, versions, label moves, samples, experiments."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    false,
)

from batchin.store.tables.base import TS, UUID_LEN, metadata

# Prompt registry (core/prompts/service.py). Everything is per tenant: registry and version ids are the
# caller's names ("support", "support@v2"), unique within one user. The `promoted` label lives on
# the registry row; every move of it is a signed row in prompt_label_moves. `experiments_enabled` is
# the owner's opt-in: only then are runs sampled (conversation text kept) and experiments run.
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
    Column("experiments_enabled", Boolean, nullable=False, server_default=false()),
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
    Index("ix_prompt_samples_created", "created_at"),  # the retention purge: oldest first
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
