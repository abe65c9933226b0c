"""The reservation ledger: every paid call reserves its maximum cost, then settles or releases.

    reserve(principal, max_units)   at admission: takes the amount off the balance and adds it to
                                    the key's spend for the month, both only if they stay within
                                    bounds (a conditional UPDATE each, atomic on SQLite and
                                    PostgreSQL) → PaymentRequired naming the limit otherwise
    settle(reservation, usage)      charges min(actual, reserved), returns the rest, writes one usage
                                    log and updates the rollups, in one transaction, exactly once
    release(reservation)            returns everything (refusals and failures before any work)

A reservation still `held` after its process died is released by `sweep_stale`, so a crash never
charges anyone twice and never keeps their credit locked.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from batchin.core.clock import month_of, utcnow
from batchin.core.context import Principal
from batchin.core.money import cents_to_units
from batchin.errors import InvalidRequest, PaymentRequired
from batchin.store.database import Database
from batchin.store.tables import key_spend, reservations, usage_logs, usage_rollups, users


@dataclass(frozen=True, slots=True)
class Reservation:
    id: str
    user_id: str
    key_id: str | None
    month: str
    amount_units: int


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """What one call consumed. `cost_units` is the price of it; the ledger caps it at the reservation."""

    request_id: str
    model: str
    endpoint: str
    cost_units: int
    latency_ms: int
    status: str = "succeeded"
    input_tokens: int = 0
    output_tokens: int = 0
    units: float = 0.0
    unit: str = "tokens"


class LedgerService:
    def __init__(self, database: Database) -> None:
        self._db = database
        self._insert = postgresql.insert if database.dialect == "postgresql" else sqlite.insert

    async def reserve(self, principal: Principal, amount_units: int) -> Reservation:
        if amount_units < 0:
            raise InvalidRequest("A reservation cannot be negative.")
        now = utcnow()
        month = month_of(now)
        reservation = Reservation(str(uuid.uuid4()), principal.user_id, principal.key_id, month, amount_units)
        async with self._db.write() as conn:
            if principal.monthly_budget_cents is not None:
                await self._charge_key_budget(conn, principal, month, amount_units)
            debited = await conn.execute(
                update(users)
                .where(users.c.id == principal.user_id, users.c.balance_units >= amount_units)
                .values(balance_units=users.c.balance_units - amount_units)
                .returning(users.c.balance_units)
            )
            if debited.first() is None:
                raise PaymentRequired(
                    "Insufficient credit balance for this request. Top up your balance and retry."
                )
            await conn.execute(
                reservations.insert().values(
                    id=reservation.id,
                    user_id=principal.user_id,
                    key_id=principal.key_id,
                    month=month,
                    amount_units=amount_units,
                    status="held",
                    created_at=now,
                )
            )
        return reservation

    async def _charge_key_budget(
        self, conn: AsyncConnection, principal: Principal, month: str, amount_units: int
    ) -> None:
        budget_units = cents_to_units(principal.monthly_budget_cents or 0)
        refusal = PaymentRequired(
            f"This API key's monthly budget of {principal.monthly_budget_cents} cents is exhausted "
            f"for {month}. Raise the key's budget or use another key."
        )
        if amount_units > budget_units:
            raise refusal
        insert = self._insert(key_spend).values(
            key_id=principal.key_id, month=month, spent_units=amount_units
        )
        stmt = insert.on_conflict_do_update(
            index_elements=[key_spend.c.key_id, key_spend.c.month],
            set_={"spent_units": key_spend.c.spent_units + insert.excluded.spent_units},
            where=key_spend.c.spent_units + insert.excluded.spent_units <= budget_units,
        ).returning(key_spend.c.spent_units)
        if (await conn.execute(stmt)).first() is None:
            raise refusal

    async def settle(self, reservation: Reservation, usage: UsageRecord) -> int:
        """Charge the call; returns the units charged (0 if this reservation was already closed)."""
        charged = max(0, min(usage.cost_units, reservation.amount_units))
        now = utcnow()
        async with self._db.write() as conn:
            if not await self._close(conn, reservation, "settled", now):
                return 0
            await self._refund(conn, reservation, reservation.amount_units - charged)
            await conn.execute(
                usage_logs.insert().values(
                    id=str(uuid.uuid4()),
                    request_id=usage.request_id,
                    reservation_id=reservation.id,
                    user_id=reservation.user_id,
                    key_id=reservation.key_id,
                    model=usage.model,
                    endpoint=usage.endpoint,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    units=usage.units,
                    unit=usage.unit,
                    cost_units=charged,
                    latency_ms=usage.latency_ms,
                    status=usage.status,
                    created_at=now,
                )
            )
            rollup = self._insert(usage_rollups).values(
                user_id=reservation.user_id,
                model=usage.model,
                requests=1,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost_units=charged,
            )
            rollup = rollup.on_conflict_do_update(
                index_elements=[usage_rollups.c.user_id, usage_rollups.c.model],
                set_={
                    "requests": usage_rollups.c.requests + 1,
                    "input_tokens": usage_rollups.c.input_tokens + rollup.excluded.input_tokens,
                    "output_tokens": usage_rollups.c.output_tokens + rollup.excluded.output_tokens,
                    "cost_units": usage_rollups.c.cost_units + rollup.excluded.cost_units,
                },
            )
            await conn.execute(rollup)
        return charged

    async def release(self, reservation: Reservation) -> bool:
        """Return the whole reservation; False if it was already settled or released."""
        async with self._db.write() as conn:
            if not await self._close(conn, reservation, "released", utcnow()):
                return False
            await self._refund(conn, reservation, reservation.amount_units)
        return True

    async def sweep_stale(self, older_than_seconds: float) -> int:
        """Release reservations left `held` by calls whose process died. Returns how many."""
        cutoff = utcnow() - timedelta(seconds=older_than_seconds)
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    select(reservations).where(
                        reservations.c.status == "held", reservations.c.created_at < cutoff
                    )
                )
            ).all()
        released = 0
        for row in rows:
            stale = Reservation(row.id, row.user_id, row.key_id, row.month, row.amount_units)
            released += int(await self.release(stale))
        return released

    async def _close(self, conn: AsyncConnection, reservation: Reservation, status: str, now: object) -> bool:
        closed = await conn.execute(
            update(reservations)
            .where(reservations.c.id == reservation.id, reservations.c.status == "held")
            .values(status=status, closed_at=now)
            .returning(reservations.c.id)
        )
        return closed.first() is not None

    async def _refund(self, conn: AsyncConnection, reservation: Reservation, units: int) -> None:
        if units <= 0:
            return
        await conn.execute(
            update(users)
            .where(users.c.id == reservation.user_id)
            .values(balance_units=users.c.balance_units + units)
        )
        if reservation.key_id is not None:
            await conn.execute(
                update(key_spend)
                .where(key_spend.c.key_id == reservation.key_id, key_spend.c.month == reservation.month)
                .values(spent_units=key_spend.c.spent_units - units)
            )
