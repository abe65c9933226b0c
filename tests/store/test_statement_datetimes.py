"""Datetimes bound on the SQLite writer's cursor: SQLAlchemy's text for each, formatted once per
instant however many columns and statements bind it."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, update
from sqlalchemy.dialects import sqlite

from batchin.store.statements import Statement, bound
from batchin.store.tables import TS

_TABLE = Table("t", MetaData(), Column("id", Integer), Column("a", TS), Column("b", TS))
_INSERT = Statement(insert(_TABLE).values(**bound("id", "a", "b")))
_UPDATE = Statement(update(_TABLE).values(b=bound("b")["b"]))
_SQLALCHEMY = TS.dialect_impl(sqlite.dialect()).bind_processor(sqlite.dialect())


@pytest.fixture
def cur() -> sqlite3.Cursor:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (id INTEGER, a, b)")
    return conn.cursor()


def _stored(cur: sqlite3.Cursor) -> list[tuple[int, str | None, str | None]]:
    return cur.execute("SELECT id, a, b FROM t ORDER BY id").fetchall()


def _text(moment: datetime) -> str:
    assert _SQLALCHEMY is not None
    return str(_SQLALCHEMY(moment))


def test_each_instant_is_stored_as_sqlalchemy_stores_it(cur: sqlite3.Cursor) -> None:
    first = datetime(2026, 12, 4, 5, 6, 7, 890123, tzinfo=UTC)
    second = first + timedelta(microseconds=1)
    naive_whole_second = datetime(2026, 1, 2, 3, 4, 5)
    _INSERT.run(cur, {"id": 1, "a": first, "b": first})
    _INSERT.run(cur, [{"id": 2, "a": first, "b": second}, {"id": 3, "a": naive_whole_second, "b": None}])
    assert _stored(cur) == [
        (1, _text(first), _text(first)),
        (2, _text(first), _text(second)),
        (3, _text(naive_whole_second), None),
    ]


def test_one_instant_is_formatted_once_across_columns_and_statements(
    cur: sqlite3.Cursor, monkeypatch: pytest.MonkeyPatch
) -> None:
    formats: list[datetime] = []

    class Counting(datetime):
        def isoformat(self, sep: str = "T", timespec: str = "auto") -> str:
            formats.append(self)
            return super().isoformat(sep, timespec)

    moment = Counting(2026, 12, 4, 5, 6, 7, 1, tzinfo=UTC)
    monkeypatch.setattr("batchin.store.statements.datetime", Counting)  # the exact-type check
    _INSERT.run(cur, {"id": 1, "a": moment, "b": moment})
    _UPDATE.run(cur, {"b": moment})
    assert formats == [moment]
    assert _stored(cur) == [(1, _text(moment), _text(moment))]
