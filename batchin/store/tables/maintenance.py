"""Periodic jobs that one server process at a time runs (core/retention.py)."""

from __future__ import annotations

from sqlalchemy import Column, String, Table, Text

from batchin.store.tables.base import TS, metadata

# One row per job, made by the first process that starts it. A process runs the job only after
# claiming the row (claimed_by, lease_until) while it is due; when done it sets the next run and
# stores what the run found (`stats`, JSON) for every process to report.
maintenance_jobs = Table(
    "maintenance_jobs",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("next_run_at", TS, nullable=False),
    Column("claimed_by", String(64), nullable=True),
    Column("lease_until", TS, nullable=True),
    Column("last_finished_at", TS, nullable=True),
    Column("stats", Text, nullable=True),
)
