"""The ledger backend for the default SQLite store: the same statements as ledger_sql.py, as plain
sqlite3 SQL run by the group-commit writer (batchin/store/sqlite_ledger.py)."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import datetime

from sqlalchemy.engine import make_url

from batchin.core.billing.ledger_backend import (
    Reservation,
    SettleGuard,
    SettlementRefused,
    UsageRecord,
    balance_refusal,
    budget_refusal,
)
from batchin.store.database import Database
from batchin.store.sqlite_ledger import SqliteLedgerWriter, sqlite_timestamp

_CHARGE_BUDGET = (
    "INSERT INTO key_spend (key_id, month, spent_units) VALUES (?, ?, ?) "
    "ON CONFLICT (key_id, month) DO UPDATE SET spent_units = key_spend.spent_units + excluded.spent_units "
    "WHERE key_spend.spent_units + excluded.spent_units <= ?"
)
_DEBIT = "UPDATE users SET balance_units = balance_units - ? WHERE id = ? AND balance_units >= ?"
_HOLD = (
    "INSERT INTO reservations (id, user_id, key_id, month, amount_units, status, created_at) "
    "VALUES (?, ?, ?, ?, ?, 'held', ?)"
)
_CLOSE = "UPDATE reservations SET status = ?, closed_at = ? WHERE id = ? AND status = 'held'"
_CREDIT = "UPDATE users SET balance_units = balance_units + ? WHERE id = ?"
_UNSPEND = "UPDATE key_spend SET spent_units = spent_units - ? WHERE key_id = ? AND month = ?"
_LOG = (
    "INSERT INTO usage_logs (id, request_id, reservation_id, user_id, key_id, model, endpoint, input_tokens, "
    "output_tokens, units, unit, cost_units, latency_ms, status, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_ROLLUP = (
    "INSERT INTO usage_rollups (user_id, model, requests, input_tokens, output_tokens, cost_units) "
    "VALUES (?, ?, 1, ?, ?, ?) ON CONFLICT (user_id, model) DO UPDATE SET "
    "requests = usage_rollups.requests + 1, "
    "input_tokens = usage_rollups.input_tokens + excluded.input_tokens, "
    "output_tokens = usage_rollups.output_tokens + excluded.output_tokens, "
    "cost_units = usage_rollups.cost_units + excluded.cost_units"
)


class SqliteLedgerBackend:
    def __init__(self, database: Database) -> None:
        path = make_url(database.url).database
        if not path or path == ":memory:":
            raise ValueError("the SQLite ledger needs a database file")
        self._writer = SqliteLedgerWriter(path)

    @property
    def writer(self) -> SqliteLedgerWriter:
        return self._writer

    async def reserve(self, reservation: Reservation, budget_units: int | None, now: datetime) -> None:
        r = reservation

        def run(cur: sqlite3.Cursor) -> None:
            if budget_units is not None:
                cur.execute(_CHARGE_BUDGET, (r.key_id, r.month, r.amount_units, budget_units))
                if cur.rowcount == 0:
                    raise budget_refusal(r, budget_units)
            cur.execute(_DEBIT, (r.amount_units, r.user_id, r.amount_units))
            if cur.rowcount == 0:
                raise balance_refusal()
            cur.execute(_HOLD, (r.id, r.user_id, r.key_id, r.month, r.amount_units, sqlite_timestamp(now)))

        await self._writer.run(run)

    async def settle(
        self,
        reservation: Reservation,
        usage: UsageRecord,
        charged: int,
        now: datetime,
        guard: SettleGuard | None = None,
    ) -> bool:
        r, u = reservation, usage
        stamp = sqlite_timestamp(now)

        def run(cur: sqlite3.Cursor) -> bool:
            if not _close(cur, r, "settled", stamp):
                return False
            if guard is not None and not guard.apply_sqlite(cur):
                raise SettlementRefused(r.id)  # the writer rolls this operation back
            _refund(cur, r, r.amount_units - charged)
            cur.execute(
                _LOG,
                (
                    str(uuid.uuid4()),
                    u.request_id,
                    r.id,
                    r.user_id,
                    r.key_id,
                    u.model,
                    u.endpoint,
                    u.input_tokens,
                    u.output_tokens,
                    u.units,
                    u.unit,
                    charged,
                    u.latency_ms,
                    u.status,
                    stamp,
                ),
            )
            cur.execute(_ROLLUP, (r.user_id, u.model, u.input_tokens, u.output_tokens, charged))
            return True

        closed: bool = await self._writer.run(run)
        return closed

    async def release(self, reservation: Reservation, now: datetime) -> bool:
        r = reservation
        stamp = sqlite_timestamp(now)

        def run(cur: sqlite3.Cursor) -> bool:
            if not _close(cur, r, "released", stamp):
                return False
            _refund(cur, r, r.amount_units)
            return True

        released: bool = await self._writer.run(run)
        return released

    async def close(self) -> None:
        await self._writer.close()


def _close(cur: sqlite3.Cursor, r: Reservation, status: str, stamp: str) -> bool:
    cur.execute(_CLOSE, (status, stamp, r.id))
    return cur.rowcount == 1


def _refund(cur: sqlite3.Cursor, r: Reservation, units: int) -> None:
    if units <= 0:
        return
    cur.execute(_CREDIT, (units, r.user_id))
    if r.key_id is not None:
        cur.execute(_UNSPEND, (units, r.key_id, r.month))
