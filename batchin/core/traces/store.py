"""Trace rows: one summary per (tenant, trace) and its spans. Every read names the tenant, so the
same W3C trace id reported by two users is two traces, and neither can see the other's.

On a SQLite store with the ledger's group-commit writer (batchin/store/group_commit.py), a batch of
trace rows is one operation of that writer: it joins the ledger's and the audit log's next
transaction as plain sqlite3 statements, instead of a SQLAlchemy transaction of its own on another
connection (four thread hand-offs and a second writer contending for SQLite's write lock).

Spans live in two forms: each of our own calls' spans packed in one trace_call_spans row
(packed.py), and a row per span in trace_spans for those sent over OTLP (and our calls' spans
stored before revision 0020). Every read reads both and returns what one table of spans would."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from batchin.core.traces.otlp import STATUS_ERROR, Span
from batchin.core.traces.packed import PACKED_COLUMNS, pack_call, unpack
from batchin.core.traces.span_rows import SPAN_FIELDS, span_from_row, span_row
from batchin.store.database import Database
from batchin.store.group_commit import GroupCommitWriter
from batchin.store.named_writes import named_write
from batchin.store.statements import Statement, bound
from batchin.store.tables import trace_call_spans, trace_spans, trace_summaries
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

    def merged(self, other: SpanTotals) -> SpanTotals:
        return SpanTotals(
            self.spans + other.spans,
            min(self.start_unix_nano, other.start_unix_nano),
            max(self.end_unix_nano, other.end_unix_nano),
            self.failed or other.failed,
        )


def _insert_ignoring_repeats(dialect: str, table: str, columns: tuple[str, ...]) -> str:
    """A driver-level INSERT of plain tuples (a fraction of SQLAlchemy's per-row parameter
    processing); table and column names are our own constants, never input."""
    marks = [f"${i}" if dialect == "postgresql" else "?" for i in range(1, len(columns) + 1)]
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(marks)})"  # noqa: S608
        " ON CONFLICT DO NOTHING"
    )


class _TraceWrites:
    """The write statements for one dialect."""

    def __init__(self, dialect: str) -> None:
        self.insert_spans = _insert_ignoring_repeats(dialect, trace_spans.name, ("user_id", *SPAN_FIELDS))
        self.insert_calls = _insert_ignoring_repeats(dialect, trace_call_spans.name, PACKED_COLUMNS)
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
    cur: sqlite3.Cursor,
    summary_rows: list[dict[str, Any]],
    span_rows: list[tuple[Any, ...]],
    call_rows: list[tuple[Any, ...]],
) -> None:
    """On the group-commit writer's thread, inside its transaction (own savepoint); by name, so
    that the writer may be another process's (serve --workers N: batchin/store/write_relay.py)."""
    writes = _sqlite_writes()
    if summary_rows:
        writes.upsert_summaries.run(cur, summary_rows)
    if call_rows:
        cur.executemany(writes.insert_calls, call_rows)
    if span_rows:
        cur.executemany(writes.insert_spans, span_rows)


class TraceStore:
    def __init__(self, database: Database, writer: GroupCommitWriter | None = None) -> None:
        self._db = database
        self._writer = writer
        self._writes = _TraceWrites(database.dialect)

    async def write(
        self,
        records: list[TraceRecord],
        spans: list[tuple[str, Span]],
        calls: Sequence[tuple[str, Sequence[Span]]] = (),
        packed: Sequence[tuple[Any, ...]] = (),
    ) -> None:
        """Upsert summaries and add spans in one transaction: `spans` (user id, span) a row each,
        `calls` (user id, one call's spans) packed a row per call, `packed` calls' rows packed
        already (CallFacts.packed). Repeats are no-ops."""
        # One statement may not touch a row twice (PostgreSQL's ON CONFLICT rule): merge first.
        summaries: dict[tuple[str, str], TraceRecord] = {}
        for record in records:
            key = (record.user_id, record.trace_id)
            known = summaries.get(key)
            summaries[key] = known.filled_from(record) if known else record
        summary_rows = [_summary_row(s) for s in summaries.values()]
        packs = {(row[0], row[1], row[2]): row for row in packed}
        loose = list(spans)
        for user, call in calls:
            row, rest = pack_call(user, call)
            if row is not None:
                packs[(user, row[1], row[2])] = row
            loose += [(user, span) for span in rest]
        span_rows = list({(user, s.trace_id, s.span_id): span_row(user, s) for user, s in loose}.values())
        if span_rows:
            span_rows = await self._not_packed(span_rows)
        call_rows = list(packs.values())
        if self._writer is not None:
            await self._writer.run(_write_sqlite(summary_rows, span_rows, call_rows))
            return
        async with self._db.write() as conn:
            if summary_rows:
                await conn.execute(self._writes.upsert_summaries.clause, summary_rows)
            if call_rows:
                await conn.exec_driver_sql(self._writes.insert_calls, call_rows)
            if span_rows:
                await conn.exec_driver_sql(self._writes.insert_spans, span_rows)

    async def _not_packed(self, span_rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The span rows whose span is not already stored in a call's pack: a span sent again
        over OTLP (say, exported by /v1/otlp/export and sent back) stays one span."""
        traces = sorted({(row[0], row[1]) for row in span_rows})
        query = select(trace_call_spans.c.user_id, trace_call_spans.c.trace_id, trace_call_spans.c.spans)
        query = query.where(tuple_(trace_call_spans.c.user_id, trace_call_spans.c.trace_id).in_(traces))
        async with self._db.read() as conn:
            packs = (await conn.execute(query)).all()
        if not packs:
            return span_rows
        packed = {(user, trace, span.span_id) for user, trace, blob in packs for span in unpack(trace, blob)}
        return [row for row in span_rows if (row[0], row[1], row[2]) not in packed]

    async def newest(
        self, user_id: str, limit: int, *, model_id: str | None = None, failed: bool | None = None
    ) -> list[TraceRecord]:
        """The user's newest traces; of one model, and with (failed) or without an error span."""
        query = select(trace_summaries).where(trace_summaries.c.user_id == user_id)
        if model_id is not None:
            query = query.where(trace_summaries.c.model_id == model_id)
        if failed is not None:
            has_error = or_(
                *(
                    exists().where(
                        table.c.user_id == trace_summaries.c.user_id,
                        table.c.trace_id == trace_summaries.c.trace_id,
                        table.c.status_code == STATUS_ERROR,  # a pack's: its spans' highest
                    )
                    for table in (trace_call_spans, trace_spans)
                )
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
        packs, rows = trace_call_spans.c, trace_spans.c
        # ERROR is the highest OTLP status code.
        of_packs = select(
            packs.trace_id,
            func.sum(packs.span_count),
            func.min(packs.start_unix_nano),
            func.max(packs.end_unix_nano),
            func.max(packs.status_code),
        ).where(packs.user_id == user_id, packs.trace_id.in_(trace_ids))
        of_rows = select(
            rows.trace_id,
            func.count(),
            func.min(rows.start_unix_nano),
            func.max(rows.end_unix_nano),
            func.max(rows.status_code),
        ).where(rows.user_id == user_id, rows.trace_id.in_(trace_ids))
        totals: dict[str, SpanTotals] = {}
        async with self._db.read() as conn:
            for query in (of_packs.group_by(packs.trace_id), of_rows.group_by(rows.trace_id)):
                for trace_id, spans, start, end, status in (await conn.execute(query)).all():
                    found = SpanTotals(int(spans), int(start), int(end), status == STATUS_ERROR)
                    totals[trace_id] = found.merged(totals[trace_id]) if trace_id in totals else found
        return totals

    async def named_spans(self, user_id: str, trace_ids: list[str], name: str) -> list[Span]:
        """The spans called `name` in these traces of the user (e.g. each call's root span)."""
        if not trace_ids:
            return []
        query = select(trace_spans).where(
            trace_spans.c.user_id == user_id,
            trace_spans.c.trace_id.in_(trace_ids),
            trace_spans.c.name == name,
        )
        packs = _packs(user_id).where(trace_call_spans.c.trace_id.in_(trace_ids))
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
            packed = await _unpacked(conn, packs)
        return [span for span in packed if span.name == name] + [span_from_row(r) for r in rows]

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
            packed = await _unpacked(conn, _packs(user_id).where(trace_call_spans.c.trace_id == trace_id))
        return _record(row), _parents_first([*packed, *(span_from_row(s) for s in spans)])

    async def spans(self, user_id: str, *, trace_id: str | None, limit: int) -> list[Span]:
        """The user's newest `limit` spans (of one trace, if named), returned oldest first."""
        query = select(trace_spans).where(trace_spans.c.user_id == user_id)
        start: ColumnElement[int] = trace_spans.c.start_unix_nano
        packs = _packs(user_id)
        if trace_id is not None:
            # One trace: read by its key and sort its spans (`start + 0` keeps SQLite from walking
            # every span of the user in the (user, start) index to skip the sort).
            query = query.where(trace_spans.c.trace_id == trace_id)
            start = start + 0
            packs = packs.where(trace_call_spans.c.trace_id == trace_id)
        query = query.order_by(start.desc(), trace_spans.c.span_id).limit(limit)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
            if trace_id is None:
                packs = await _newest_packs(conn, packs, user_id, limit)
            packed = await _unpacked(conn, packs)
        # Newest first, ties by span id (the ORDER BY above), then the `limit` of them oldest first.
        spans = [*packed, *(span_from_row(r) for r in rows)]
        spans.sort(key=lambda s: (-s.start_unix_nano, s.span_id))
        return spans[:limit][::-1]


def _packs(user_id: str) -> Select[str, bytes]:
    return select(trace_call_spans.c.trace_id, trace_call_spans.c.spans).where(
        trace_call_spans.c.user_id == user_id
    )


async def _unpacked(conn: AsyncConnection, packs: Select[str, bytes]) -> list[Span]:
    return [span for trace_id, blob in (await conn.execute(packs)).all() for span in unpack(trace_id, blob)]


async def _newest_packs(
    conn: AsyncConnection, packs: Select[str, bytes], user_id: str, limit: int
) -> Select[str, bytes]:
    """The packs that may hold some of the user's newest `limit` spans: those whose latest span
    starts no earlier than the `limit`-th latest of those starts. (A pack of one of those spans is
    among them: fewer than `limit` packs can hold a span that starts later than that span.)"""
    last_start = trace_call_spans.c.last_start_unix_nano
    nth = (
        select(last_start)
        .where(trace_call_spans.c.user_id == user_id)
        .order_by(last_start.desc())
        .offset(limit - 1)
        .limit(1)
    )
    threshold = (await conn.execute(nth)).scalar()
    return packs if threshold is None else packs.where(last_start >= threshold)


def _summary_row(s: TraceRecord) -> dict[str, Any]:
    return {name: getattr(s, name) for name in _SUMMARY_COLUMNS}


def _record(r: Any) -> TraceRecord:
    return TraceRecord(**{f.name: getattr(r, f.name) for f in fields(TraceRecord)})


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
