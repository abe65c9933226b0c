"""The reservation ledger: every paid call reserves its maximum cost, then settles or releases.

    reserve(principal, max_units)   at admission: takes the amount off the balance and adds it to
                                    the key's spend for the month, both only if they stay within
                                    bounds (conditional UPDATEs, atomic on SQLite and PostgreSQL)
                                    → PaymentRequired naming the limit otherwise
    settle(reservation, usage)      charges min(actual, reserved), returns the rest, writes one usage
                                    log and updates the rollups, in one transaction, exactly once
    release(reservation)            returns everything (refusals and failures before any work)

A reservation still `held` after its process died is released by `sweep_stale`, so a crash never
charges anyone twice and never keeps their credit locked.

    settle(..., guard=g)            also runs the guard's write in the same transaction; if the guard
                                    refuses (e.g. the batch task is no longer this worker's), nothing
                                    is written and SettlementRefused is raised: a batch task is
                                    billed exactly when its result is recorded

Each write is one script of statements (ledger_writes.py) with one transaction path per store: on
the default SQLite store the group-commit writer (batchin/store/group_commit.py, the hot path; the
audit log and the batch store share it), elsewhere SQLAlchemy.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select

from batchin.core.billing.ledger_records import Reservation, SettleGuard, UsageRecord, budget_refusal
from batchin.core.billing.ledger_writes import LedgerWrites
from batchin.core.billing.money import cents_to_units
from batchin.core.clock import month_of, utcnow
from batchin.core.context import Principal
from batchin.errors import InvalidRequest
from batchin.store.database import Database
from batchin.store.group_commit import GroupCommitWriter, sqlite_file
from batchin.store.statements import Transactions
from batchin.store.tables import reservations, video_jobs


class LedgerService:
    def __init__(self, database: Database) -> None:
        self._db = database
        self.sqlite_writer: GroupCommitWriter | None = None
        if database.is_sqlite:
            path = sqlite_file(database)
            if path is None:
                raise ValueError("the SQLite ledger needs a database file")
            # Shared with the audit log and the batch store: their writes join the ledger's batches.
            self.sqlite_writer = GroupCommitWriter(path)
        self._transactions = Transactions(database, self.sqlite_writer)
        self._writes = LedgerWrites(database.dialect)

    async def reserve(
        self, principal: Principal, amount_units: int, *, reservation_id: str | None = None
    ) -> Reservation:
        """Hold `amount_units`. A caller that must find the reservation again after a crash (a batch
        task) names it with `reservation_id`, unique per attempt."""
        if amount_units < 0:
            raise InvalidRequest("A reservation cannot be negative.")
        now = utcnow()
        reservation = Reservation(
            reservation_id or str(uuid.uuid4()),
            principal.user_id,
            principal.key_id,
            month_of(now),
            amount_units,
        )
        budget_units = (
            cents_to_units(principal.monthly_budget_cents)
            if principal.monthly_budget_cents is not None
            else None
        )
        if budget_units is not None and amount_units > budget_units:
            raise budget_refusal(reservation, budget_units)
        await self._transactions.run(self._writes.reserve(reservation, budget_units, now))
        return reservation

    async def settle(self, reservation: Reservation, usage: UsageRecord) -> int:
        """Charge the call; returns the units charged (0 if this reservation was already closed)."""
        charged = max(0, min(usage.cost_units, reservation.amount_units))
        closed = await self._transactions.run(self._writes.settle(reservation, usage, charged, utcnow()))
        return charged if closed else 0

    async def settle_guarded(
        self, reservation: Reservation, usage: UsageRecord, guard: SettleGuard
    ) -> int | None:
        """Charge the call and apply `guard`'s write in one transaction. Returns the units charged,
        None if the reservation was already closed (nothing written, guard not run); raises
        SettlementRefused if the guard refused."""
        charged = max(0, min(usage.cost_units, reservation.amount_units))
        settle = self._writes.settle(reservation, usage, charged, utcnow(), guard)
        closed = await self._transactions.run(settle)
        return charged if closed else None

    async def load(self, reservation_id: str) -> Reservation | None:
        """A held reservation by id (None when it does not exist or is already closed)."""
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    select(reservations).where(
                        reservations.c.id == reservation_id, reservations.c.status == "held"
                    )
                )
            ).first()
        if row is None:
            return None
        return Reservation(row.id, row.user_id, row.key_id, row.month, row.amount_units)

    async def release(self, reservation: Reservation) -> bool:
        """Return the whole reservation; False if it was already settled or released."""
        return await self._transactions.run(self._writes.release(reservation, utcnow()))

    async def sweep_stale(self, older_than_seconds: float) -> int:
        """Release reservations left `held` by calls whose process died. Returns how many."""
        cutoff = utcnow() - timedelta(seconds=older_than_seconds)
        # A queued or running video job legitimately holds its reservation for as long as it waits;
        # its own recovery settles or releases it.
        live_jobs = select(video_jobs.c.reservation_id).where(
            video_jobs.c.status.in_(("queued", "in_progress"))
        )
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    select(reservations).where(
                        reservations.c.status == "held",
                        reservations.c.created_at < cutoff,
                        reservations.c.id.not_in(live_jobs),
                    )
                )
            ).all()
        released = 0
        for row in rows:
            stale = Reservation(row.id, row.user_id, row.key_id, row.month, row.amount_units)
            released += int(await self.release(stale))
        return released

    async def close(self) -> None:
        if self.sqlite_writer is not None:
            await self.sqlite_writer.close()
