"""Stored files and durable video jobs."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from batchin.store.tables.base import TS, UUID_LEN, metadata

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
    Index("ix_files_created", "created_at"),  # the retention purge: oldest first
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
    # The output's file id, chosen at submit so output_url exists from `queued`; the file itself
    # is stored when the job completes.
    Column("file_id", String(64), nullable=True),
    # The base URL the job was created through: output_url's host when no request names one (MCP).
    Column("origin", String(300), nullable=True),
    # The submitting call's trace context, run id, prompt version and region: the job's trace and
    # receipt join that call's (its `traceparent` response header names the job's root span).
    Column("traceparent", String(55), nullable=True),
    Column("parent_span_id", String(16), nullable=True),
    Column("run_id", String(64), nullable=True),
    Column("prompt_version", String(200), nullable=True),
    Column("region", String(64), nullable=True),
    # The audit record signed over the prompt and the MP4 when the job completed (X-VaaS-Record-Id).
    Column("record_id", String(UUID_LEN), nullable=True),
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
