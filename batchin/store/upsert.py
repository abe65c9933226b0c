"""INSERT … ON CONFLICT for the store's dialect.

SQLAlchemy spells the upsert once per dialect (`postgresql.insert`, `sqlite.insert`: the same
`on_conflict_do_update` / `on_conflict_do_nothing` and `excluded`); this picks the one to build with.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite


def upsert_insert(dialect: str) -> Any:
    """The `insert` constructor whose statements take ON CONFLICT clauses on `dialect` (a
    SQLAlchemy backend name: `Database.dialect`, `conn.dialect.name`)."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert
