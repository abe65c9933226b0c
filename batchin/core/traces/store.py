"""Trace rows: one summary per (tenant, trace) and its spans. Every read names the tenant, so the
same W3C trace id reported by two users is two traces, and neither can see the other's.

On a SQLite store with the ledger's group-commit writer (batchin/store/group_commit.py), a batch of
trace rows is one operation of that writer: it joins the ledger's and the audit log's next
transaction as plain sqlite3 statements, instead of a SQLAlchemy transaction of its own on another
connection (four thread hand-offs and a second writer contending for SQLite's write lock)."""

from __future__ import annotations

import functools
import sqlite3
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, exists, func, select

from batchin.core.traces.otlp import STATUS_ERROR, Span
from batchin.store.database import Database
from batchin.store.group_commit import GroupCommitWriter
from batchin.store.named_writes import named_write
from batchin.store.statements import Statement, bound
from batchin.store.tables import trace_spans, trace_summaries
from batchin.store.upsert import upsert_insert

SUMMARY_FIELDS = (
    "run_id",
    "record_id",
    "route_id",
    "provider",
    "environment",
    "prompt_version_id",
    "model_id",
)
_SPAN_JSON_FIELDS = ("attributes", "resource_attributes", "events", "links")
_SPAN_FIELDS = tuple(f.name for f in fields(Span))


@dataclass(frozen=True, slots=True)
class TraceRecord:
    """A trace's summary row: what the trace list shows."""

    trace_id: str
    user_id: str
    source: str  # batchin | otlp: who reported the trace first
    created_at: datetime
    run_id: str | None = None
    record_id: str | None = None
    route_id: str | None = None
    provider: str | None = None
    environment: str | None = None
    prompt_version_id: str | None = None
    model_id: str | None = None

    def filled_from(self, newer: TraceRecord) -> TraceRecord:
        """Facts this record lacks, taken from a later report of the same trace."""
        return replace(self, **{name: getattr(self, name) or getattr(newer, name) for name in SUMMARY_FIELDS})


_SUMMARY_COLUMNS = tuple(f.name for f in fields(TraceRecord))


@dataclass(frozen=True, slots=True)
class SpanTotals:
    spans: int
    start_unix_nano: int
    end_unix_nano: int
    failed: bool  # some span has status ERROR


class _TraceWrites:
    """The two write statements for one dialect."""

    def __init__(self, dialect: str) -> None:
        # Spans are the bulk of what is written (five rows per call): a driver-level executemany of
        # plain tuples costs a fraction of SQLAlchemy's per-row parameter processing.
        columns = ("user_id", *_SPAN_FIELDS)
        dollar = dialect == "postgresql"
        marks = [f"${i}" if dollar else "?" for i in range(1, len(columns) + 1)]
        # Table and column names are our own constants, never input.
        self.insert_spans = (
            f"INSERT INTO {trace_spans.name} ({', '.join(columns)}) VALUES ({', '.join(marks)})"  # noqa: S608
            " ON CONFLICT DO NOTHING"
        )
        insert = upsert_insert(dialect)(trace_summaries).values(**bound(*_SUMMARY_COLUMNS))
        # A trace first seen through OTLP gets its call facts when our own call reports; facts
        # already stored are kept (the first call of a trace names it).
        self.upsert_summaries = Statement(
            insert.on_conflict_do_update(
                index_elements=[trace_summaries.c.user_id, trace_summaries.c.trace_id],
                set_={
                    name: func.coalesce(trace_summaries.c[name], insert.excluded[name])
                    for name in SUMMARY_FIELDS
                },
            )
        )


@functools.cache
def _sqlite_writes() -> _TraceWrites:
    return _TraceWrites("sqlite")


@named_write
def _write_sqlite(
    cur: sqlite3.Cursor, summary_rows: list[dict[str, Any]], span_rows: list[tuple[Any, ...]]
) -> None:
    """On the group-commit writer's thread, inside its transaction (own savepoint); by name, so
    that the writer may be another process's (serve --workers N: batchin/store/write_relay.py)."""
    writes = _sqlite_writes()
    if summary_rows:
        writes.upsert_summaries.run(cur, summary_rows)
    if span_rows:
        cur.executemany(writes.insert_spans, span_rows)


class TraceStore:
    def __init__(self, database: Database, writer: GroupCommitWriter | None = None) -> None:
        self._db = database
        self._writer = writer
        self._writes = _TraceWrites(database.dialect)

    async def write(self, records: list[TraceRecord], spans: list[tuple[str, Span]]) -> None:
        """Upsert summaries and add spans (user id, span) in one transaction; repeats are no-ops."""
        # One statement may not touch a row twice (PostgreSQL's ON CONFLICT rule): merge first.
        summaries: dict[tuple[str, str], TraceRecord] = {}
        for record in records:
            key = (record.user_id, record.trace_id)
            known = summaries.get(key)
            summaries[key] = known.filled_from(record) if known else record
        summary_rows = [_summary_row(s) for s in summaries.values()]
        span_rows = list({(user, s.trace_id, s.span_id): _span_row(user, s) for user, s in spans}.values())
        if self._writer is not None:
            await self._writer.run(_write_sqlite(summary_rows, span_rows))
            return
        async with self._db.write() as conn:
            if summary_rows:
                await conn.execute(self._writes.upsert_summaries.clause, summary_rows)
            if span_rows:
                await conn.exec_driver_sql(self._writes.insert_spans, span_rows)

    async def newest(
        self, user_id: str, limit: int, *, model_id: str | None = None, failed: bool | None = None
    ) -> list[TraceRecord]:
        """The user's newest traces; of one model, and with (failed) or without an error span."""
        query = select(trace_summaries).where(trace_summaries.c.user_id == user_id)
        if model_id is not None:
            query = query.where(trace_summaries.c.model_id == model_id)
        if failed is not None:
            has_error = exists().where(
                trace_spans.c.user_id == trace_summaries.c.user_id,
                trace_spans.c.trace_id == trace_summaries.c.trace_id,
                trace_spans.c.status_code == STATUS_ERROR,
            )
            query = query.where(has_error if failed else ~has_error)
        query = query.order_by(trace_summaries.c.created_at.desc(), trace_summaries.c.trace_id.desc())
        async with self._db.read() as conn:
            rows = (await conn.execute(query.limit(limit))).all()
        return [_record(r) for r in rows]

    async def span_totals(self, user_id: str, trace_ids: list[str]) -> dict[str, SpanTotals]:
        """Per trace: how many spans, when the first started and the last ended, any error."""
        if not trace_ids:
            return {}
        query = (
            select(
                trace_spans.c.trace_id,
                func.count(),
                func.min(trace_spans.c.start_unix_nano),
                func.max(trace_spans.c.end_unix_nano),
                func.max(trace_spans.c.status_code),  # ERROR is the highest OTLP status code
            )
            .where(trace_spans.c.user_id == user_id, trace_spans.c.trace_id.in_(trace_ids))
            .group_by(trace_spans.c.trace_id)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return {r[0]: SpanTotals(int(r[1]), int(r[2]), int(r[3]), r[4] == STATUS_ERROR) for r in rows}

    async def named_spans(self, user_id: str, trace_ids: list[str], name: str) -> list[Span]:
        """The spans called `name` in these traces of the user (e.g. each call's root span)."""
        if not trace_ids:
            return []
        query = select(trace_spans).where(
            trace_spans.c.user_id == user_id,
            trace_spans.c.trace_id.in_(trace_ids),
            trace_spans.c.name == name,
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [_span(r) for r in rows]

    async def trace(self, user_id: str, trace_id: str) -> tuple[TraceRecord, list[Span]] | None:
        """A trace and its spans, oldest first; None when this user has no such trace."""
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    select(trace_summaries).where(
                        trace_summaries.c.user_id == user_id, trace_summaries.c.trace_id == trace_id
                    )
                )
            ).first()
            if row is None:
                return None
            # Unordered: _parents_first sorts them. An ORDER BY start made SQLite read the trace
            # through the (user, start) index, i.e. every span of the user, not the trace's by key.
            spans = (
                await conn.execute(
                    select(trace_spans).where(
                        trace_spans.c.user_id == user_id, trace_spans.c.trace_id == trace_id
                    )
                )
            ).all()
        return _record(row), _parents_first([_span(s) for s in spans])

    async def spans(self, user_id: str, *, trace_id: str | None, limit: int) -> list[Span]:
        """The user's newest `limit` spans (of one trace, if named), returned oldest first."""
        query = select(trace_spans).where(trace_spans.c.user_id == user_id)
        start: ColumnElement[int] = trace_spans.c.start_unix_nano
        if trace_id is not None:
            # One trace: read by its key and sort its spans (`start + 0` keeps SQLite from walking
            # every span of the user in the (user, start) index to skip the sort).
            query = query.where(trace_spans.c.trace_id == trace_id)
            start = start + 0
        query = query.order_by(start.desc(), trace_spans.c.span_id).limit(limit)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [_span(r) for r in reversed(rows)]


def _summary_row(s: TraceRecord) -> dict[str, Any]:
    return {name: getattr(s, name) for name in _SUMMARY_COLUMNS}


def _record(r: Any) -> TraceRecord:
    return TraceRecord(**{f.name: getattr(r, f.name) for f in fields(TraceRecord)})


def _span_row(user_id: str, span: Span) -> tuple[Any, ...]:
    """The user id, then the span's values in `fields(Span)` order (the INSERT's column order)."""
    return (
        user_id,
        span.trace_id,
        span.span_id,
        span.parent_span_id,
        span.name,
        span.kind,
        span.start_unix_nano,
        span.end_unix_nano,
        span.status_code,
        span.status_message,
        _json_list(span.attributes),
        _shared_json_list(span.resource_attributes),
        _json_list(span.events),
        _json_list(span.links),
        span.trace_state,
        span.flags,
        span.scope_name[:200],
        span.scope_version[:200],
        span.source,
    )


def _json_list(values: list[Any]) -> str:
    return orjson.dumps(values).decode() if values else "[]"


# The resource attributes of our own spans are one list per (environment, region), shared by every
# span (builder._resource): its JSON is made once. Keyed by identity, the list held alongside so
# its id cannot be reused while cached; lists sent over OTLP just pass through a bounded cache.
_SHARED_JSON: dict[int, tuple[list[Any], str]] = {}


def _shared_json_list(values: list[Any]) -> str:
    known = _SHARED_JSON.get(id(values))
    if known is not None and known[0] is values:
        return known[1]
    text = _json_list(values)
    if len(_SHARED_JSON) >= 64:
        _SHARED_JSON.clear()
    _SHARED_JSON[id(values)] = (values, text)
    return text


def _span(r: Any) -> Span:
    values = {name: getattr(r, name) for name in _SPAN_FIELDS}
    for name in _SPAN_JSON_FIELDS:
        values[name] = orjson.loads(values[name])
    return Span(**values)


def _parents_first(spans: list[Span]) -> list[Span]:
    """Oldest first; of spans that start together, the enclosing one (longer, or the parent) first."""
    parents = {s.span_id: s.parent_span_id for s in spans}

    def depth(span: Span) -> int:
        level, parent, seen = 0, span.parent_span_id, {span.span_id}
        while parent in parents and parent not in seen:
            seen.add(parent)
            level, parent = level + 1, parents[parent]
        return level

    return sorted(spans, key=lambda s: (s.start_unix_nano, -s.end_unix_nano, depth(s), s.span_id))
