"""Where the group-commit writer's CPU goes per call, statement by statement.

What a chat call asks of the store (as bench/ab_store_c1.py: the reservation, a pause for the
upstream, the settlement and the receipt's log append together, the trace write-behind), from
`--concurrency` callers at once, in this process on a fresh SQLite store. The writer's cursor is
wrapped so that each statement's thread CPU (sqlite3's C code and the bind) is summed by SQL text,
and each operation's (the Python that drives its statements included): per call, the SQL's own cost
next to the Python around it. The wrapper adds a little to both; compare trees with the same script.
`--relay`: the writes go by name over a write relay served in this process (the supervisor's writer
of `serve --workers N`: store/write_relay.py), which runs the same operations on its own thread.

    PYTHONPATH=TREE python bench/profile_writer_sql.py [--calls 2000] [--concurrency 16] [--relay]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

_SQL_NS: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # SQL head -> [calls, thread ns]
_OPS_NS: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # operation -> [calls, thread ns]


def _head(sql: str) -> str:
    return " ".join(sql.split())[:90]


class _TimedCursor:
    """A sqlite3 cursor whose statements are timed on the thread's CPU clock."""

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self._cur = cur

    def _timed(self, method: Any, sql: str, params: Any) -> Any:
        start = time.thread_time_ns()
        try:
            return method(sql, params)
        finally:
            figures = _SQL_NS[_head(sql)]
            figures[0] += 1
            figures[1] += time.thread_time_ns() - start

    def execute(self, sql: str, params: Any = ()) -> Any:
        self._timed(self._cur.execute, sql, params)
        return self

    def executemany(self, sql: str, params: Any) -> Any:
        self._timed(self._cur.executemany, sql, params)
        return self

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    def close(self) -> None:
        self._cur.close()


def _instrument() -> None:
    from batchin.store import group_commit

    def timed_operation(operation: Any) -> Any:
        name = getattr(operation, "name", None) or getattr(operation, "__qualname__", "op")
        if name.endswith("_ledger_write"):
            name += ":" + operation.args[0]

        def run(cur: Any) -> Any:
            start = time.thread_time_ns()
            try:
                return operation(cur)
            finally:
                figures = _OPS_NS[name]
                figures[0] += 1
                figures[1] += time.thread_time_ns() - start

        return run

    plain_run = group_commit.GroupCommitWriter._run

    def run(conn: sqlite3.Connection, operations: list[Any]) -> Any:
        timed = [timed_operation(op) for op in operations]
        start = time.thread_time_ns()
        try:
            return plain_run(_TimedConnection(conn), timed)  # type: ignore[arg-type]
        finally:
            figures = _OPS_NS["(transaction: operations + savepoints + COMMIT)"]
            figures[0] += 1
            figures[1] += time.thread_time_ns() - start

    group_commit.GroupCommitWriter._run = staticmethod(run)  # type: ignore[method-assign]


class _TimedConnection:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def cursor(self) -> _TimedCursor:
        return _TimedCursor(self._conn.cursor())

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction


async def _main(calls: int, concurrency: int, relay: bool) -> dict[str, Any]:
    from batchin import app
    from batchin.app import build_services
    from batchin.config import Settings
    from batchin.core.audit.service import AuditUsage
    from batchin.core.billing.ledger_records import UsageRecord
    from batchin.core.context import CallContext, Principal
    from batchin.protocol.accounts import KeyCreateRequest

    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="profile-writer-sql-")))
    served = None
    if relay:
        import os

        from batchin.store.write_relay import WRITER_SOCKET, RelayedWriter, WriteRelay

        database_file = str(settings.data_dir / "batchin.db")  # migrated by build_services
        served = WriteRelay(settings.data_dir / WRITER_SOCKET, os.urandom(32), database_file)
        address = served.address
        app._relayed_writer = lambda _database, _relay: RelayedWriter(database_file, address)  # type: ignore[assignment]
    services = await build_services(settings)
    user = await services.accounts.create_user("p@example.com", "p", 10**9)
    key = await services.accounts.create_key(user.id, KeyCreateRequest())
    principal = Principal(user.id, key.id, key.key_prefix, key.rate_limit_rpm, None)

    class Timings:
        def __init__(self) -> None:
            now = time.monotonic()
            self.received_at, self.admitted_at = now - 0.003, now - 0.002
            self.first_token_at, self.finished_at = now - 0.001, now
            self.queued_seconds, self.ttft_seconds = 0.0, 0.002

    async def call() -> None:
        request_id = "req_" + uuid.uuid4().hex
        ctx = CallContext(principal=principal, request_id=request_id)
        reservation = await services.ledger.reserve(principal, 157)
        await asyncio.sleep(0.002)
        pending = services.audit.begin_call(ctx, model_id="m", input_text=b"benchmark prompt")
        usage = UsageRecord(request_id, "m", "chat", 116, 100, input_tokens=12, output_tokens=20)
        settled, _ = await asyncio.gather(
            services.ledger.settle(reservation, usage),
            services.audit.finish(pending, output_text="x" * 80, usage=AuditUsage(12, 20)),
        )
        services.traces.record_generation(
            ctx, endpoint="chat", model_id="m", timings=Timings(), status="succeeded", cost_units=settled
        )

    async def caller(count: int) -> None:
        for _ in range(count):
            await call()

    try:
        await asyncio.gather(*(caller(20) for _ in range(concurrency)))  # warm-up
        await services.traces.flush()
        _instrument()
        _SQL_NS.clear()
        _OPS_NS.clear()
        await asyncio.gather(*(caller(calls // concurrency) for _ in range(concurrency)))
        await services.traces.flush()
    finally:
        await services.close()
        if served is not None:
            await served.close()
    done = calls // concurrency * concurrency
    per_call = {
        "statements_us": {
            sql: {"per_call": round(n / done, 3), "us_per_call": round(ns / done / 1000, 2)}
            for sql, (n, ns) in sorted(_SQL_NS.items(), key=lambda item: -item[1][1])
        },
        "operations_us": {
            name: {"per_call": round(n / done, 3), "us_per_call": round(ns / done / 1000, 2)}
            for name, (n, ns) in sorted(_OPS_NS.items(), key=lambda item: -item[1][1])
        },
        "sql_total_us": round(sum(ns for _, ns in _SQL_NS.values()) / done / 1000, 2),
    }
    return {
        "bench": "profile_writer_sql",
        "calls": done,
        "concurrency": concurrency,
        "relay": relay,
        **per_call,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--relay", action="store_true", help="write through an in-process write relay")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_main(args.calls, args.concurrency, args.relay))))


if __name__ == "__main__":
    main()
