"""The portable ledger backend (SQLAlchemy Core; PostgreSQL in production, any database in tests).
Each operation is one transaction of conditional statements."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from batchin.core.billing.ledger_backend import (
    Reservation,
    SettleGuard,
    SettlementRefused,
    UsageRecord,
    balance_refusal,
    budget_refusal,
)
from batchin.store.database import Database
from batchin.store.tables import key_spend, reservations, usage_logs, usage_rollups, users


class SqlLedgerBackend:
    def __init__(self, database: Database) -> None:
        self._db = database
        self._insert: Any = postgresql.insert if database.dialect == "postgresql" else sqlite.insert

    async def reserve(self, reservation: Reservation, budget_units: int | None, now: datetime) -> None:
        async with self._db.write() as conn:
            if budget_units is not None:
                insert = self._insert(key_spend).values(
                    key_id=reservation.key_id, month=reservation.month, spent_units=reservation.amount_units
                )
                stmt = insert.on_conflict_do_update(
                    index_elements=[key_spend.c.key_id, key_spend.c.month],
                    set_={"spent_units": key_spend.c.spent_units + insert.excluded.spent_units},
                    where=key_spend.c.spent_units + insert.excluded.spent_units <= budget_units,
                ).returning(key_spend.c.spent_units)
                if (await conn.execute(stmt)).first() is None:
                    raise budget_refusal(reservation, budget_units)
            debited = await conn.execute(
                update(users)
                .where(users.c.id == reservation.user_id, users.c.balance_units >= reservation.amount_units)
                .values(balance_units=users.c.balance_units - reservation.amount_units)
                .returning(users.c.balance_units)
            )
            if debited.first() is None:
                raise balance_refusal()
            await conn.execute(
                reservations.insert().values(
                    id=reservation.id,
                    user_id=reservation.user_id,
                    key_id=reservation.key_id,
                    month=reservation.month,
                    amount_units=reservation.amount_units,
                    status="held",
                    created_at=now,
                )
            )

    async def settle(
        self,
        reservation: Reservation,
        usage: UsageRecord,
        charged: int,
        now: datetime,
        guard: SettleGuard | None = None,
    ) -> bool:
        async with self._db.write() as conn:
            if not await self._close(conn, reservation, "settled", now):
                return False
            if guard is not None and not await guard.apply(conn):
                raise SettlementRefused(reservation.id)  # leaving the block rolls everything back
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
            await conn.execute(
                rollup.on_conflict_do_update(
                    index_elements=[usage_rollups.c.user_id, usage_rollups.c.model],
                    set_={
                        "requests": usage_rollups.c.requests + 1,
                        "input_tokens": usage_rollups.c.input_tokens + rollup.excluded.input_tokens,
                        "output_tokens": usage_rollups.c.output_tokens + rollup.excluded.output_tokens,
                        "cost_units": usage_rollups.c.cost_units + rollup.excluded.cost_units,
                    },
                )
            )
        return True

    async def release(self, reservation: Reservation, now: datetime) -> bool:
        async with self._db.write() as conn:
            if not await self._close(conn, reservation, "released", now):
                return False
            await self._refund(conn, reservation, reservation.amount_units)
        return True

    async def close(self) -> None:
        return None

    async def _close(
        self, conn: AsyncConnection, reservation: Reservation, status: str, now: datetime
    ) -> bool:
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
