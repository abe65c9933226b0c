"""Verifiable audit records, their keys and the transparency log."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from batchin.store.tables.base import TS, UUID_LEN, metadata

# Verifiable audit (VaaS): public keys by id (old keys stay, so old records still verify), signed
# records, and the RFC 6962 transparency log over them (see core/audit/log.py).
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
    # The console's receipts page: "this user's newest records first".
    Index("ix_vaas_records_user_created", "user_id", "created_at", "id"),
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
