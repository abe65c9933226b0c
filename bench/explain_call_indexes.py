"""The SQLite query plan of every query that reads the tables a paid call writes.

A chat call writes users, key_spend, reservations, usage_logs, usage_rollups, the audit log
(vaas_log_state, vaas_log_nodes, vaas_records) and its trace (trace_summaries, trace_call_spans; OTLP's
spans go to trace_spans); each
index there costs a B-tree write per row. This migrates a fresh store, then prints `EXPLAIN QUERY
PLAN` for each query of the read paths (the SQL the services issue, parameters as `?`), so the
table of indexes → queries in bench/profiles/indexes_rows6.txt can be checked against this tree.

    python bench/explain_call_indexes.py
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from pathlib import Path

# (who asks, the SQL): each as the service's SQLAlchemy statement renders it on SQLite, trimmed to
# the clauses that decide the plan.
QUERIES: list[tuple[str, str]] = [
    (
        "ledger.sweep_stale (held, silent)",
        "SELECT * FROM reservations WHERE status = 'held' AND coalesce(renewed_at, created_at) < ? "
        "AND id NOT IN (SELECT reservation_id FROM video_jobs WHERE status IN ('queued', 'in_progress'))",
    ),
    ("ledger.load (held by id)", "SELECT * FROM reservations WHERE id = ? AND status = 'held'"),
    (
        "ledger settle/release close",
        "UPDATE reservations SET status = ?, closed_at = ? WHERE id = ? AND status = 'held'",
    ),
    ("ledger.renew", "UPDATE reservations SET renewed_at = ? WHERE id IN (?, ?) AND status = 'held'"),
    ("batches/video load_reservation", "SELECT * FROM reservations WHERE id = ?"),
    (
        "video_worker.recover",
        "SELECT video_jobs.* FROM video_jobs "
        "JOIN reservations ON reservations.id = video_jobs.reservation_id "
        "WHERE reservations.status = 'held' AND video_jobs.status IN ('completed', 'failed', 'deleted')",
    ),
    (
        "media retention (videos)",
        "SELECT id, file_id FROM video_jobs WHERE status IN ('completed', 'failed') "
        "AND coalesce(completed_at, created_at) < ? AND NOT EXISTS (SELECT 1 FROM reservations "
        "WHERE reservations.id = video_jobs.reservation_id AND reservations.status = 'held') "
        "ORDER BY coalesce(completed_at, created_at) LIMIT ?",
    ),
    (
        "ledger.check_funds (key spend)",
        "SELECT spent_units FROM key_spend WHERE key_id = ? AND month = ?",
    ),
    (
        "usage.list_logs",
        "SELECT usage_logs.*, users.currency FROM usage_logs JOIN users ON users.id = usage_logs.user_id "
        "WHERE usage_logs.user_id = ? AND usage_logs.model = ? "
        "ORDER BY usage_logs.created_at DESC, usage_logs.id DESC LIMIT ? OFFSET ?",
    ),
    (
        "usage.activity",
        "SELECT count(*), sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) FROM usage_logs "
        "WHERE user_id = ? AND created_at >= ?",
    ),
    (
        "usage.daily",
        "SELECT created_at, model, cost_units FROM usage_logs WHERE user_id = ? AND created_at >= ? "
        "ORDER BY created_at DESC LIMIT ?",
    ),
    ("usage.summary (rollups)", "SELECT sum(requests) FROM usage_rollups WHERE user_id = ?"),
    ("audit.record (by id)", "SELECT * FROM vaas_records WHERE id = ?"),
    (
        "audit owned list",
        "SELECT payload, created_at FROM vaas_records WHERE user_id = ? "
        "ORDER BY created_at DESC, id DESC LIMIT ?",
    ),
    ("audit owned one", "SELECT payload, created_at FROM vaas_records WHERE id = ? AND user_id = ?"),
    ("audit.check_log", "SELECT leaf_index, payload FROM vaas_records"),
    ("audit log nodes", "SELECT level, idx, hash FROM vaas_log_nodes WHERE level = ? AND idx = ?"),
    (
        "traces.newest (failed filter)",
        "SELECT * FROM trace_summaries WHERE user_id = ? AND EXISTS (SELECT 1 FROM trace_spans "
        "WHERE trace_spans.user_id = trace_summaries.user_id "
        "AND trace_spans.trace_id = trace_summaries.trace_id "
        "AND trace_spans.status_code = 2) ORDER BY created_at DESC, trace_id DESC LIMIT ?",
    ),
    (
        "traces.span_totals",
        "SELECT trace_id, count(*), min(start_unix_nano) FROM trace_spans WHERE user_id = ? "
        "AND trace_id IN (?, ?) GROUP BY trace_id",
    ),
    (
        "traces.trace (spans)",
        "SELECT * FROM trace_spans WHERE user_id = ? AND trace_id = ?",
    ),
    (
        "traces.spans (export of one trace)",
        "SELECT * FROM trace_spans WHERE user_id = ? AND trace_id = ? "
        "ORDER BY start_unix_nano + 0 DESC, span_id LIMIT ?",
    ),
    (
        "traces.spans (newest of a user)",
        "SELECT * FROM trace_spans WHERE user_id = ? ORDER BY start_unix_nano DESC, span_id LIMIT ?",
    ),
    (
        "traces.newest (failed filter, packed calls)",
        "SELECT * FROM trace_summaries WHERE user_id = ? AND EXISTS (SELECT 1 FROM trace_call_spans "
        "WHERE trace_call_spans.user_id = trace_summaries.user_id "
        "AND trace_call_spans.trace_id = trace_summaries.trace_id "
        "AND trace_call_spans.status_code = 2) ORDER BY created_at DESC, trace_id DESC LIMIT ?",
    ),
    (
        "traces.span_totals (packed calls)",
        "SELECT trace_id, sum(span_count), min(start_unix_nano) FROM trace_call_spans WHERE user_id = ? "
        "AND trace_id IN (?, ?) GROUP BY trace_id",
    ),
    (
        "traces.trace / export of one trace / root spans (packed calls)",
        "SELECT trace_id, spans FROM trace_call_spans WHERE user_id = ? AND trace_id = ?",
    ),
    (
        "traces.spans (newest of a user: the packs' threshold)",
        "SELECT last_start_unix_nano FROM trace_call_spans WHERE user_id = ? "
        "ORDER BY last_start_unix_nano DESC LIMIT 1 OFFSET ?",
    ),
    (
        "traces.spans (newest of a user: the packs)",
        "SELECT trace_id, spans FROM trace_call_spans WHERE user_id = ? AND last_start_unix_nano >= ?",
    ),
    (
        "traces.write (OTLP spans already packed)",
        "SELECT user_id, trace_id, spans FROM trace_call_spans WHERE (user_id, trace_id) IN (VALUES (?, ?))",
    ),
    ("traces retention sizes (packed spans)", "SELECT sum(span_count) FROM trace_call_spans"),
    (
        "traces retention purge",
        "SELECT user_id, trace_id FROM trace_summaries WHERE created_at < ? ORDER BY created_at LIMIT ?",
    ),
]


def main() -> None:
    from batchin.app import build_services
    from batchin.config import Settings

    async def migrate(data_dir: Path) -> None:
        services = await build_services(Settings(data_dir=data_dir))
        await services.close()

    data_dir = Path(tempfile.mkdtemp(prefix="explain-indexes-"))
    asyncio.run(migrate(data_dir))
    conn = sqlite3.connect(data_dir / "batchin.db")
    print("indexes on the tables a call writes:")
    for table in (
        "users",
        "key_spend",
        "reservations",
        "usage_logs",
        "usage_rollups",
        "vaas_records",
        "vaas_log_nodes",
        "vaas_log_state",
        "trace_summaries",
        "trace_call_spans",
        "trace_spans",
    ):
        for _, name, unique, origin, partial in conn.execute(f"PRAGMA index_list({table})"):
            columns = [c[2] for c in conn.execute(f"PRAGMA index_info({name})")]
            flags = ("unique " if unique else "") + {
                "pk": "primary key",
                "u": "unique constraint",
                "c": "index",
            }[origin]
            print(f"  {table:16} {name:36} ({', '.join(columns)}) {flags}{' partial' if partial else ''}")
    print("\nplans:")
    for who, sql in QUERIES:
        steps = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, [None] * sql.count("?"))]
        print(f"  {who}:\n    " + "\n    ".join(steps))


if __name__ == "__main__":
    main()
