"""The ledger's three writes, each one script of conditional statements (batchin/store/statements.py)
run in one transaction on either write path: the SQLite group-commit writer or SQLAlchemy.

Every condition is a statement's rowcount: a budget upsert whose WHERE fails, a debit that would
overdraw, a reservation no longer `held`, or a settle guard that changes no row each leave 0 rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Integer, String, bindparam, func, insert, literal_column, update

from batchin.core.billing.ledger_records import (
    GuardedSettlement,
    PendingReserve,
    Reservation,
    SettleGuard,
    SettlementRefused,
    UsageRecord,
    balance_refusal,
    budget_refusal,
)
from batchin.core.random_ids import uuid7_text
from batchin.store.statements import Script, Statement, bound
from batchin.store.tables import TS, key_spend, reservations, usage_logs, usage_rollups, users
from batchin.store.upsert import upsert_insert

# Constants are written into the SQL, not bound: nothing to merge into each call's parameters.
_HELD = literal_column("'held'", String)
_ONE = literal_column("1", Integer)

# In an UPDATE a WHERE parameter may not be named like a column of its table (SQLAlchemy reserves
# those names for the SET clause): hence `reservation_id`, `spend_key`, `spend_month`.
_DEBIT = Statement(
    update(users)
    .where(users.c.id == bindparam("user_id"), users.c.balance_units >= bindparam("units"))
    .values(balance_units=users.c.balance_units - bindparam("units"))
)
_CREDIT = Statement(
    update(users)
    .where(users.c.id == bindparam("user_id"))
    .values(balance_units=users.c.balance_units + bindparam("units"))
)
_UNSPEND = Statement(
    update(key_spend)
    .where(key_spend.c.key_id == bindparam("spend_key"), key_spend.c.month == bindparam("spend_month"))
    .values(spent_units=key_spend.c.spent_units - bindparam("units"))
)
_HOLD = Statement(
    insert(reservations).values(
        status=_HELD,
        **bound("id", "user_id", "key_id", "month", "amount_units", "created_at", "renewed_at"),
    )
)
_CLOSE = Statement(
    update(reservations)
    .where(reservations.c.id == bindparam("reservation_id"), reservations.c.status == _HELD)
    .values(status=bindparam("status"), closed_at=bindparam("closed_at"))
)
# A row written by a process that predates `renewed_at` (a rolling upgrade) has none: its creation
# is its last sign of life.
_LAST_SIGN_OF_LIFE = func.coalesce(reservations.c.renewed_at, reservations.c.created_at)
# The sweeper's close: only while the holder is still silent, so a renewal that lands between the
# sweeper's read and this write keeps the reservation.
_REOPEN = Statement(
    update(reservations)
    .where(reservations.c.id == bindparam("reservation_id"))
    .values(status=_HELD, closed_at=None)
)
_CLOSE_SILENT = Statement(
    update(reservations)
    .where(
        reservations.c.id == bindparam("reservation_id"),
        reservations.c.status == _HELD,
        bindparam("silent_since", type_=TS) > _LAST_SIGN_OF_LIFE,
    )
    .values(status=literal_column("'released'", String), closed_at=bindparam("closed_at"))
)
_RENEW = Statement(
    update(reservations)
    .where(
        reservations.c.id.in_(bindparam("reservation_ids", expanding=True)),
        reservations.c.status == _HELD,
    )
    .values(renewed_at=bindparam("now", type_=TS))
)
# Bound parameters per statement stay well under SQLite's limit (32766; 999 before 3.32).
_RENEW_CHUNK = 500
_LOG_COLUMNS = (
    "id",
    "request_id",
    "reservation_id",
    "user_id",
    "key_id",
    "model",
    "endpoint",
    "input_tokens",
    "output_tokens",
    "units",
    "unit",
    "cost_units",
    "latency_ms",
    "status",
    "created_at",
)
_LOG = Statement(insert(usage_logs).values(**bound(*_LOG_COLUMNS)))


class LedgerWrites:
    """The writes for one dialect (its two upserts are spelled per dialect: batchin/store/upsert.py)."""

    def __init__(self, dialect: str) -> None:
        upsert = upsert_insert(dialect)
        spend = upsert(key_spend).values(
            key_id=bindparam("key_id"), month=bindparam("month"), spent_units=bindparam("amount_units")
        )
        added = {"spent_units": key_spend.c.spent_units + spend.excluded.spent_units}
        self._charge_budget = Statement(
            spend.on_conflict_do_update(
                index_elements=[key_spend.c.key_id, key_spend.c.month],
                set_=added,
                where=key_spend.c.spent_units + spend.excluded.spent_units <= bindparam("budget_units"),
            )
        )
        # A key without a budget counts its spend too: the keys list shows it, and a budget set
        # later in the month starts from what the key has already spent.
        self._charge_spend = Statement(
            spend.on_conflict_do_update(index_elements=[key_spend.c.key_id, key_spend.c.month], set_=added)
        )
        rollup = upsert(usage_rollups).values(
            requests=_ONE,
            **bound("user_id", "model", "input_tokens", "output_tokens", "cost_units"),
        )
        r = usage_rollups.c
        # A settled block adds many requests to one rollup row at once.
        rollups = upsert(usage_rollups).values(
            **bound("user_id", "model", "requests", "input_tokens", "output_tokens", "cost_units")
        )
        self._rollup_many = Statement(
            rollups.on_conflict_do_update(
                index_elements=[r.user_id, r.model],
                set_={
                    "requests": r.requests + rollups.excluded.requests,
                    "input_tokens": r.input_tokens + rollups.excluded.input_tokens,
                    "output_tokens": r.output_tokens + rollups.excluded.output_tokens,
                    "cost_units": r.cost_units + rollups.excluded.cost_units,
                },
            )
        )
        self._rollup = Statement(
            rollup.on_conflict_do_update(
                index_elements=[r.user_id, r.model],
                set_={
                    "requests": r.requests + _ONE,
                    "input_tokens": r.input_tokens + rollup.excluded.input_tokens,
                    "output_tokens": r.output_tokens + rollup.excluded.output_tokens,
                    "cost_units": r.cost_units + rollup.excluded.cost_units,
                },
            )
        )

    def reserve(self, reservation: Reservation, budget_units: int | None, now: datetime) -> Script[None]:
        """Hold the amount: add it to the key's spend this month (refused past its budget, when it
        has one), debit the balance, record the reservation; PaymentRequired naming the limit otherwise."""
        r = reservation
        spend = {"key_id": r.key_id, "month": r.month, "amount_units": r.amount_units}
        if budget_units is not None:
            if (yield self._charge_budget, {**spend, "budget_units": budget_units}).rowcount == 0:
                raise budget_refusal(r.month, budget_units)
        elif r.key_id is not None:
            yield self._charge_spend, spend
        if (yield _DEBIT, {"user_id": r.user_id, "units": r.amount_units}).rowcount == 0:
            raise balance_refusal()
        yield _HOLD, _hold(r, now)

    def reserve_block(self, block: Sequence[PendingReserve], now: datetime) -> Script[list[str | None]]:
        """Many reservations as one operation (the calls' reservations queued while the writer was
        busy): per reservation None (held) or what refused it, "budget" or "balance" (nothing of it
        left written), decided in the order `reserve` decides. The same rows as one `reserve` each,
        fewer statements: the spend and the debit one by one (each decides its reservation; a debit
        refused takes back the spend added a statement before, in this same transaction), the
        reservations in one executemany."""
        refusals: list[str | None] = []
        holds = []
        for one in block:
            r = one.reservation
            spend = {"key_id": r.key_id, "month": r.month, "amount_units": r.amount_units}
            if one.budget_units is not None:
                charge = {**spend, "budget_units": one.budget_units}
                if (yield self._charge_budget, charge).rowcount == 0:
                    refusals.append("budget")
                    continue
            elif r.key_id is not None:
                yield self._charge_spend, spend
            if (yield _DEBIT, {"user_id": r.user_id, "units": r.amount_units}).rowcount == 0:
                if one.budget_units is not None or r.key_id is not None:  # its spend: taken back
                    yield _UNSPEND, {"spend_key": r.key_id, "spend_month": r.month, "units": r.amount_units}
                refusals.append("balance")
                continue
            holds.append(_hold(r, now))
            refusals.append(None)
        if holds:
            yield _HOLD, holds if len(holds) > 1 else holds[0]  # one row: execute, not executemany
        return refusals

    def settle(
        self,
        reservation: Reservation,
        usage: UsageRecord,
        charged: int,
        now: datetime,
        guard: SettleGuard | None = None,
    ) -> Script[bool]:
        """Close a held reservation charging `charged`, log the usage and roll it up; False if it was
        already closed. A guard's write joins the transaction (SettlementRefused if it refuses)."""
        r, u = reservation, usage
        if not (yield from _close(r, "settled", now)):
            return False
        if guard is not None and (yield guard.statement, guard.params).rowcount != 1:
            raise SettlementRefused(r.id)  # raising rolls the whole operation back
        yield from _refund(r, r.amount_units - charged)
        yield _LOG, _usage_log(r, u, charged, now)
        rollup = {
            "user_id": r.user_id,
            "model": u.model,
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cost_units": charged,
        }
        yield self._rollup, rollup
        return True

    def settle_block(self, block: Sequence[GuardedSettlement], now: datetime) -> Script[list[bool | None]]:
        """Many settlements as one operation (the batch dispatcher's group commit, the calls'
        settlements queued while the writer was busy): per settlement True (charged, its guard's
        write done if it has one), None (its reservation was already closed: nothing written, as
        `settle` returning False) or False (its guard refused: nothing of it written, as
        SettlementRefused). The same rows as one `settle` each, fewer statements: the reservations
        are closed and the guards run one by one (each decides its settlement), the usage logs go
        in one executemany, and the refunds and rollups are summed per row first."""
        outcomes: list[bool | None] = []
        charged_ones: list[GuardedSettlement] = []
        for one in block:
            r = one.reservation
            closing = {"reservation_id": r.id, "status": "settled", "closed_at": now}
            if (yield _CLOSE, closing).rowcount != 1:
                outcomes.append(None)
                continue
            if one.guard is not None and (yield one.guard.statement, one.guard.params).rowcount != 1:
                # The guard refused: undo this close (the only write of this settlement so far; the
                # row was `held` with no closed_at a statement ago, in this same transaction).
                yield _REOPEN, {"reservation_id": r.id}
                outcomes.append(False)
                continue
            outcomes.append(True)
            charged_ones.append(one)
        if not charged_ones:
            return outcomes
        credits: dict[str, int] = {}
        unspent: dict[tuple[str, str], int] = {}
        rollups: dict[tuple[str, str], list[int]] = {}
        logs = []
        for one in charged_ones:
            r, u, charged = one.reservation, one.usage, one.charged
            refund = r.amount_units - charged
            if refund > 0:
                credits[r.user_id] = credits.get(r.user_id, 0) + refund
                if r.key_id is not None:
                    unspent[(r.key_id, r.month)] = unspent.get((r.key_id, r.month), 0) + refund
            logs.append(_usage_log(r, u, charged, now))
            totals = rollups.setdefault((r.user_id, u.model), [0, 0, 0, 0])
            totals[0] += 1
            totals[1] += u.input_tokens
            totals[2] += u.output_tokens
            totals[3] += charged
        yield _LOG, logs if len(logs) > 1 else logs[0]  # one row: execute, not executemany
        for (key_id, month), units in sorted(unspent.items()):  # spend rows first, as in _refund
            yield _UNSPEND, {"spend_key": key_id, "spend_month": month, "units": units}
        for user_id, units in sorted(credits.items()):
            yield _CREDIT, {"user_id": user_id, "units": units}
        for (user_id, model), (requests, input_tokens, output_tokens, cost) in sorted(rollups.items()):
            yield (
                self._rollup_many,
                {
                    "user_id": user_id,
                    "model": model,
                    "requests": requests,
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                    "cost_units": cost,
                },
            )
        return outcomes

    def release(self, reservation: Reservation, now: datetime) -> Script[bool]:
        """Close a held reservation charging nothing; False if it was already closed."""
        if not (yield from _close(reservation, "released", now)):
            return False
        yield from _refund(reservation, reservation.amount_units)
        return True

    def release_silent(self, reservation: Reservation, silent_since: datetime, now: datetime) -> Script[bool]:
        """Release a held reservation whose holder has shown no sign of life since `silent_since`;
        False if it was closed or renewed meanwhile."""
        params = {"reservation_id": reservation.id, "silent_since": silent_since, "closed_at": now}
        if (yield _CLOSE_SILENT, params).rowcount != 1:
            return False
        yield from _refund(reservation, reservation.amount_units)
        return True

    def renew(self, reservation_ids: list[str], now: datetime) -> Script[int]:
        """Mark the held ones among these reservations alive at `now`; returns how many."""
        renewed = 0
        for start in range(0, len(reservation_ids), _RENEW_CHUNK):
            chunk = reservation_ids[start : start + _RENEW_CHUNK]
            renewed += (yield _RENEW, {"reservation_ids": chunk, "now": now}).rowcount
        return renewed


def _hold(r: Reservation, now: datetime) -> dict[str, object]:
    return {
        "id": r.id,
        "user_id": r.user_id,
        "key_id": r.key_id,
        "month": r.month,
        "amount_units": r.amount_units,
        "created_at": now,
        "renewed_at": now,
    }


def _usage_log(r: Reservation, u: UsageRecord, charged: int, now: datetime) -> dict[str, object]:
    return {
        "id": uuid7_text(),  # time-ordered: appended to the usage logs' id index
        "request_id": u.request_id,
        "reservation_id": r.id,
        "user_id": r.user_id,
        "key_id": r.key_id,
        "model": u.model,
        "endpoint": u.endpoint,
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "units": u.units,
        "unit": u.unit,
        "cost_units": charged,
        "latency_ms": u.latency_ms,
        "status": u.status,
        "created_at": now,
    }


def _close(r: Reservation, status: str, now: datetime) -> Script[bool]:
    closed = yield _CLOSE, {"reservation_id": r.id, "status": status, "closed_at": now}
    return closed.rowcount == 1


def _refund(r: Reservation, units: int) -> Script[None]:
    # The key's spend row before the user's balance row: the order `reserve` locks them in, so a
    # refund and a reservation of one key at once can never deadlock on PostgreSQL.
    if units <= 0:
        return
    if r.key_id is not None:
        yield _UNSPEND, {"spend_key": r.key_id, "spend_month": r.month, "units": units}
    yield _CREDIT, {"user_id": r.user_id, "units": units}
