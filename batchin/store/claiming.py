"""Claiming rows that several workers (processes, replicas) poll for, without waiting on each other.

On PostgreSQL a claim locks the rows it picks with FOR UPDATE SKIP LOCKED: a worker passes over the
rows another worker's open transaction holds instead of queueing behind it. SQLite has no row locks
and SQLAlchemy renders no FOR UPDATE there: a write transaction (BEGIN IMMEDIATE) already holds the
whole database, so the same statement is exclusive as it stands. Either way one statement serves.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import CTE, Select

_S = TypeVar("_S", bound=Select[Any])


def skip_locked(query: _S) -> _S:
    """`query`, locking the rows it returns and skipping those other transactions hold."""
    return query.with_for_update(skip_locked=True)


def picked(query: Select[Any]) -> CTE:
    """The rows `query` picks (skip_locked), picked exactly once, as the CTE `picked` for an UPDATE
    … FROM picked. PostgreSQL may run an `IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)` once per
    outer row (a nested-loop semi-join), each run locking different rows: it would claim more than
    n. A MATERIALIZED CTE runs once (SQLite ≥ 3.35 reads the same keyword)."""
    return skip_locked(query).cte("picked").prefix_with("MATERIALIZED")
