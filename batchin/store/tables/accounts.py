"""Users, API keys, spend, reservations, usage logs and top-ups: the control plane."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
    true,
)

from batchin.store.tables.base import TS, UUID_LEN, metadata

_HELD = text("status = 'held'")

users = Table(
    "users",
    metadata,
    Column("id", String(UUID_LEN), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("balance_units", BigInteger, nullable=False, default=0),
    # USD or CNY, fixed when the account is opened: the unit of its balance, keys' budgets and spend,
    # usage costs and top-ups (protocol/currency.py).
    Column("currency", String(3), nullable=False, server_default="USD"),
    Column("created_at", TS, nullable=False),
    # Console sign-in (core/accounts/signup.py): an argon2id hash, none for CLI-made users.
    Column("password_hash", String(255), nullable=True),
    # Operator-made users are verified; a self-service signup is not until its email link is used.
    Column("email_verified", Boolean, nullable=False, server_default=true(), default=True),
    # The entry the account was opened through ("global" or "china"); fixed at opening.
    Column("entry", String(16), nullable=False, server_default="global", default="global"),
    # SHA-256 of the pending email-verification token; cleared once used.
    Column("verify_token_hash", String(64), nullable=True),
    CheckConstraint("balance_units >= 0", name="balance_non_negative"),
    CheckConstraint("currency IN ('USD', 'CNY')", name="currency_known"),
)
Index("ix_users_verify_token_hash", users.c.verify_token_hash, unique=True)

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
    # JSON arrays. A row written without them has no scopes (refused everywhere), every model and
    # every region; the service always writes all three (core/accounts/key_rows.py).
    Column("scopes", Text, nullable=False, server_default="[]"),
    Column("models", Text, nullable=False, server_default="[]"),
    Column("regions", Text, nullable=False, server_default="[]"),
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
    # The holder's last sign of life: renewed while the call holding it lives (a stream, a batch
    # task), so the sweeper releases only the reservations of calls that died with their process.
    Column("renewed_at", TS, nullable=True),
    Column("closed_at", TS, nullable=True),
    # Only the held reservations: every reader asks for those (the sweep, video job recovery and
    # purge), so closed ones leave the index and it stays as small as the calls in flight.
    Index("ix_reservations_held", "created_at", sqlite_where=_HELD, postgresql_where=_HELD),
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
    # No index on request_id: no query reads the logs by it (migration 0019 dropped it).
    Index("ix_usage_logs_user_created", "user_id", "created_at", "id"),
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

# The bytes of each user's stored files (core/billing/storage_quota.py), changed in the same
# transaction as the file rows, so a quota check is one small read and one conditional update.
storage_usage = Table(
    "storage_usage",
    metadata,
    Column("user_id", String(UUID_LEN), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("bytes", BigInteger, nullable=False, default=0),
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
