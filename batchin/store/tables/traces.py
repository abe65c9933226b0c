"""Traces: per-tenant summaries and their spans."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)

from batchin.store.tables.base import TS, UUID_LEN, metadata

# Traces (core/traces/service.py). One row per (tenant, trace): the same W3C trace id seen by two users is
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
    Index("ix_trace_summaries_created", "created_at"),  # the retention purge: oldest first
)

# Spans sent to /v1/otlp/traces (source otlp), and those of our own calls (source batchin) stored
# before trace_call_spans (0020). Attributes, events and links are kept in OTLP's JSON form so
# export loses nothing.
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

# The spans of each of our own calls (source batchin), packed into one row keyed by the call's root
# span (core/traces/packed.py): three B-tree inserts a call (the row and two index entries) where
# a row per span made fifteen. The columns beside the pack are what reads filter and sort on without
# unpacking: the spans' earliest start and latest end (a trace's totals), latest start (the newest
# spans first), highest status code (ERROR is the highest: a failed trace) and count.
trace_call_spans = Table(
    "trace_call_spans",
    metadata,
    Column("user_id", String(UUID_LEN), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("trace_id", String(32), primary_key=True),
    Column("span_id", String(16), primary_key=True),  # the call's root span
    Column("start_unix_nano", BigInteger, nullable=False),
    Column("end_unix_nano", BigInteger, nullable=False),
    Column("last_start_unix_nano", BigInteger, nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("span_count", Integer, nullable=False),
    Column("spans", LargeBinary, nullable=False),
    # The count rides along so that the spans stored are counted from the index alone.
    Index("ix_trace_call_spans_user_last_start", "user_id", "last_start_unix_nano", "span_count"),
)
