"""Batch task rows: the statements of the hot path, on either database.

Every write is one statement (batchin/store/statements.py), run on SQLite by the ledger's
group-commit writer (batchin/store/group_commit.py: one thread, one transaction per batch of
operations, the cheapest write SQLite has) and on PostgreSQL through SQLAlchemy. Reads go through
the ordinary read connections (WAL readers never block the writer).

Claiming takes up to `limit` pending tasks in (priority, next_attempt_at, id) order and marks them
`running` under this worker's lease, in one statement (batchin/store/claiming.py: PostgreSQL skips
rows other workers hold; SQLite: the writer's BEGIN IMMEDIATE serialises claims).
Every later write to a task is conditional on (claimed_by, attempts, status running): a worker
that lost its lease can no longer change the task, so a task never completes twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import ColumnClause, bindparam, func, literal_column, select, text, update

from batchin.core.batches.tasks import ClaimedTask, now_ms
from batchin.store.claiming import picked
from batchin.store.database import Database
from batchin.store.group_commit import GroupCommitWriter
from batchin.store.statements import Params, Script, Statement, Transactions
from batchin.store.tables import batch_tasks

__all__ = ["CompleteGuard", "TaskStore"]

_TASK_COLUMNS = (
    "batch_id",
    "line",
    "custom_id",
    "endpoint",
    "model",
    "body",
    "priority",
    "status",
    "next_attempt_at",
    "attempts",
    "failures",
)
_INSERT = (
    "INSERT INTO batch_tasks (batch_id, line, custom_id, endpoint, model, body, priority, status, "
    "next_attempt_at, attempts, failures) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (batch_id, line) DO NOTHING"
)
_t = batch_tasks.c
# Inline, as a literal: the planner sees which status (pending rows are few among finished ones).
_PENDING: ColumnClause[str] = literal_column("'pending'")
_CLAIMABLE = picked(
    select(_t.id)
    .where(
        _t.status == _PENDING,
        _t.priority <= bindparam("max_priority"),
        _t.next_attempt_at <= bindparam("now"),
    )
    .order_by(_t.priority, _t.next_attempt_at, _t.id)
    .limit(bindparam("limit"))
)
_CLAIM = Statement(
    update(batch_tasks)
    .where(_t.id == _CLAIMABLE.c.id, _t.status == _PENDING)
    .values(
        status="running",
        claimed_by=bindparam("worker"),
        lease_until=bindparam("lease"),
        attempts=_t.attempts + 1,
    )
    .returning(
        _t.id,
        _t.batch_id,
        _t.line,
        _t.custom_id,
        _t.endpoint,
        _t.model,
        _t.body,
        _t.priority,
        _t.next_attempt_at,
        _t.attempts,
        _t.failures,
    )
)
# Every write after the claim holds only while the task is still this worker's attempt.
_COMPLETE = Statement(
    text(
        "UPDATE batch_tasks SET status = 'completed', status_code = :status_code, response = :response, "
        "error_code = NULL, error_message = NULL, cost_units = :cost_units, finished_at = :now, "
        "claimed_by = NULL, lease_until = NULL "
        "WHERE id = :id AND claimed_by = :worker AND attempts = :attempt AND status = 'running'"
    )
)
_FAIL = Statement(
    text(
        "UPDATE batch_tasks SET status = 'failed', status_code = :status_code, response = :response, "
        "error_code = :error_code, error_message = :error_message, finished_at = :now, "
        "claimed_by = NULL, lease_until = NULL "
        "WHERE id = :id AND claimed_by = :worker AND attempts = :attempt AND status = 'running'"
    )
)
_RETRY = Statement(
    text(
        "UPDATE batch_tasks SET status = 'pending', failures = failures + :failed, next_attempt_at = :next, "
        "error_code = :error_code, error_message = :error_message, claimed_by = NULL, lease_until = NULL "
        "WHERE id = :id AND claimed_by = :worker AND attempts = :attempt AND status = 'running'"
    )
)
_STOP = Statement(
    text(
        "UPDATE batch_tasks SET status = :status, finished_at = :now, claimed_by = NULL, lease_until = NULL "
        "WHERE id = :id AND claimed_by = :worker AND attempts = :attempt AND status = 'running'"
    )
)
_RENEW = Statement(
    text("UPDATE batch_tasks SET lease_until = :lease WHERE status = 'running' AND claimed_by = :worker")
)
_HAND_BACK = Statement(
    text(
        "UPDATE batch_tasks SET status = 'pending', claimed_by = NULL, lease_until = NULL "
        "WHERE status = 'running' AND claimed_by = :worker"
    )
)
# A bulk change of a batch's waiting tasks, a chunk at a time so the writer is never held for long.
_WAITING = picked(
    select(_t.id).where(_t.batch_id == bindparam("batch"), _t.status == _PENDING).limit(bindparam("limit"))
)
_SETTLE_WAITING = Statement(
    update(batch_tasks)
    .where(_t.id == _WAITING.c.id, _t.status == _PENDING)
    .values(status=bindparam("status"), finished_at=bindparam("now"))
)
_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class CompleteGuard:
    """The task's completion, written in the same transaction as its charge (core/billing/ledger.py):
    it refuses when the task is no longer this worker's attempt."""

    params: dict[str, Any]
    statement: Statement = _COMPLETE


class TaskStore:
    def __init__(self, database: Database, writer: GroupCommitWriter | None) -> None:
        self._db = database
        self._writer = writer if database.is_sqlite else None
        self._transactions = Transactions(database, self._writer)

    # -- writing ---------------------------------------------------------------------------------

    async def _execute(self, statement: Statement, params: Params) -> int:
        return await self._transactions.run(_rowcount(statement, params))

    async def insert(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert task rows (tuples in _TASK_COLUMNS order), one transaction per call. A loader
        resumes after the last line stored, so a chunk is never inserted twice; on SQLite a row
        already there is left alone anyway."""
        if not rows:
            return
        if self._writer is not None:
            await self._writer.run(lambda cur: cur.executemany(_INSERT, rows))
            return
        async with self._db.write() as conn:
            # COPY: a million rows load in seconds on PostgreSQL (executemany takes a minute).
            driver = (await conn.get_raw_connection()).driver_connection
            if driver is None:
                raise RuntimeError("no PostgreSQL connection to COPY into")
            await driver.copy_records_to_table("batch_tasks", records=rows, columns=_TASK_COLUMNS)

    async def claim(
        self, worker: str, limit: int, *, lease_seconds: float, max_priority: int
    ) -> list[ClaimedTask]:
        now = now_ms()
        params = {
            "worker": worker,
            "lease": now + int(lease_seconds * 1000),
            "max_priority": max_priority,
            "now": now,
            "limit": limit,
        }
        rows = await self._transactions.run(_rows(_CLAIM, params))
        tasks = [ClaimedTask.from_row(row) for row in rows]
        tasks.sort(key=lambda t: (t.priority, t.next_attempt_at, t.id))
        return tasks

    def complete_guard(
        self, task: ClaimedTask, worker: str, *, status_code: int, response: str, cost_units: int
    ) -> CompleteGuard:
        return CompleteGuard(
            {
                "status_code": status_code,
                "response": response,
                "cost_units": cost_units,
                "now": now_ms(),
                **_mine(task, worker),
            }
        )

    async def fail(
        self, task: ClaimedTask, worker: str, *, status_code: int, response: str, code: str, message: str
    ) -> bool:
        params = {
            "status_code": status_code,
            "response": response,
            "error_code": code[:64],
            "error_message": message[:2000],
            "now": now_ms(),
            **_mine(task, worker),
        }
        return await self._execute(_FAIL, params) == 1

    async def retry(
        self, task: ClaimedTask, worker: str, *, delay_seconds: float, counts: bool, code: str, message: str
    ) -> bool:
        """Back to pending, due after `delay_seconds`; `counts`: a failure against the retry budget."""
        params = {
            "failed": int(counts),
            "next": now_ms() + int(delay_seconds * 1000),
            "error_code": code[:64],
            "error_message": message[:2000],
            **_mine(task, worker),
        }
        return await self._execute(_RETRY, params) == 1

    async def stop(self, task: ClaimedTask, worker: str, status: str) -> bool:
        """A claimed task that never started: cancelled or expired with its batch."""
        return await self._execute(_STOP, {"status": status, "now": now_ms(), **_mine(task, worker)}) == 1

    async def renew(self, worker: str, lease_seconds: float) -> int:
        return await self._execute(_RENEW, {"worker": worker, "lease": now_ms() + int(lease_seconds * 1000)})

    async def hand_back(self, worker: str) -> int:
        """A clean stop: this worker's running tasks go back to pending at once, costing no retry."""
        return await self._execute(_HAND_BACK, {"worker": worker})

    async def settle_waiting(self, batch_id: str, status: str) -> int:
        """Every pending task of a batch → `status` (cancelled or expired). Returns how many."""
        total = 0
        while True:
            params = {"status": status, "now": now_ms(), "batch": batch_id, "limit": _CHUNK}
            changed = await self._execute(_SETTLE_WAITING, params)
            total += changed
            if changed < _CHUNK:
                return total

    async def reclaim(self, rows: Sequence[Any], *, max_retries: int) -> int:
        """Tasks of a lost worker (rows with id, attempts, failures, claimed_by): back to pending
        (one failure more), or failed once they have lost `max_retries` workers."""
        changed = 0
        for row in rows:
            mine = {"id": row.id, "worker": row.claimed_by, "attempt": row.attempts}
            if row.failures + 1 > max_retries:
                message = f"The task stopped its worker {row.failures + 1} times."
                response = _error_body("worker_lost", message)
                params = {"status_code": 500, "response": response, "now": now_ms(), **mine}
                changed += await self._execute(
                    _FAIL, {**params, "error_code": "worker_lost", "error_message": message}
                )
            else:
                params = {"failed": 1, "next": now_ms(), "error_code": "worker_lost", **mine}
                changed += await self._execute(
                    _RETRY, {**params, "error_message": "Its worker stopped; it runs again."}
                )
        return changed

    # -- reading ---------------------------------------------------------------------------------

    async def lost(self, *, limit: int = 1000) -> list[Any]:
        """Running tasks whose lease has run out."""
        query = text(
            "SELECT id, batch_id, attempts, failures, claimed_by FROM batch_tasks "
            "WHERE status = 'running' AND lease_until < :now LIMIT :limit"
        )
        async with self._db.read() as conn:
            return list((await conn.execute(query, {"now": now_ms(), "limit": limit})).all())

    async def earliest_lease(self) -> int | None:
        """When the first lease of a running task runs out (unix ms); None when none runs."""
        query = text("SELECT min(lease_until) FROM batch_tasks WHERE status = 'running'")
        async with self._db.read() as conn:
            value = (await conn.execute(query)).scalar()
        return None if value is None else int(value)

    async def running_of(self, workers: Sequence[str]) -> list[Any]:
        """Running tasks claimed by any of `workers`."""
        if not workers:
            return []
        t = batch_tasks.c
        query = select(t.id, t.batch_id, t.attempts, t.failures, t.claimed_by).where(
            t.status == "running", t.claimed_by.in_(workers)
        )
        async with self._db.read() as conn:
            return list((await conn.execute(query)).all())

    async def claimers(self) -> list[str]:
        query = text("SELECT DISTINCT claimed_by FROM batch_tasks WHERE status = 'running'")
        async with self._db.read() as conn:
            return [r[0] for r in (await conn.execute(query)).all() if r[0]]

    async def unfinished(self, batch_id: str) -> bool:
        query = text(
            "SELECT 1 FROM batch_tasks WHERE batch_id = :b AND status IN ('pending', 'running') LIMIT 1"
        )
        async with self._db.read() as conn:
            return (await conn.execute(query, {"b": batch_id})).first() is not None

    async def finished_counts(self, batch_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Completed and failed tasks, per batch: only those entries of the (batch_id, status)
        index are read, not the batch's waiting ones."""
        if not batch_ids:
            return {}
        t = batch_tasks.c
        query = (
            select(t.batch_id, t.status, func.count())
            .where(t.batch_id.in_(batch_ids), t.status.in_(("completed", "failed")))
            .group_by(t.batch_id, t.status)
        )
        counts: dict[str, dict[str, int]] = {b: {} for b in batch_ids}
        async with self._db.read() as conn:
            for batch_id, status, count in (await conn.execute(query)).all():
                counts[batch_id][status] = int(count)
        return counts

    async def last_line(self, batch_id: str) -> int:
        """The highest line stored for a batch (-1 when none)."""
        query = text("SELECT max(line) FROM batch_tasks WHERE batch_id = :b")
        async with self._db.read() as conn:
            value = (await conn.execute(query, {"b": batch_id})).scalar()
        return -1 if value is None else int(value)

    async def page(self, batch_id: str, *, after: int, limit: int) -> list[Any]:
        """Tasks of a batch in line order, after line `after`."""
        query = text(
            "SELECT line, custom_id, model, status, status_code, response, error_code, error_message "
            "FROM batch_tasks WHERE batch_id = :b AND line > :after ORDER BY line LIMIT :limit"
        )
        async with self._db.read() as conn:
            return list((await conn.execute(query, {"b": batch_id, "after": after, "limit": limit})).all())


def _rowcount(statement: Statement, params: Params) -> Script[int]:
    return (yield statement, params).rowcount


def _rows(statement: Statement, params: Params) -> Script[list[Any]]:
    return list((yield statement, params).fetchall())


def _mine(task: ClaimedTask, worker: str) -> dict[str, Any]:
    return {"id": task.id, "worker": worker, "attempt": task.attempt}


def _error_body(code: str, message: str) -> str:
    error = {"message": message, "type": "server_error", "code": code, "param": None}
    return orjson.dumps({"error": error}).decode()
