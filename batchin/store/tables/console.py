"""Console sign-in sessions and signup invites (core/accounts/sessions.py, core/accounts/signup.py).
Both store only SHA-256 hashes of their secrets: a database dump yields no usable session or code."""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, String, Table

from batchin.store.tables.base import TS, UUID_LEN, metadata

console_sessions = Table(
    "console_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", String(UUID_LEN), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    # The session's CSRF token, compared with every form's hidden field.
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("revoked_at", TS, nullable=True),
    Index("ix_console_sessions_user_id", "user_id"),
)

signup_invites = Table(
    "signup_invites",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("note", String(200), nullable=True),
    Column("created_at", TS, nullable=False),
    Column("used_by", String(UUID_LEN), ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("used_at", TS, nullable=True),
)
