"""The reservation ledger: every paid call reserves its maximum cost, then settles or releases.

    reserve(principal, max_units)   at admission: takes the amount off the balance and adds it to
                                    the key's spend for the month, both only if they stay within
                                    bounds (conditional UPDATEs, atomic on SQLite and PostgreSQL)
                                    → PaymentRequired naming the limit otherwise
    settle(reservation, usage)      charges min(actual, reserved), returns the rest, writes one usage
                                    log and updates the rollups, in one transaction, exactly once
    release(reservation)            returns everything (refusals and failures before any work)

Cancellation never tears a write: each runs to its end even when its caller is cancelled (a client
gone while its call waits in the group-commit queue or on a lock). A reserve whose caller gave up is
released as soon as its write is through, since no one else could ever release it.

Liveness: the process holding a reservation for a live call (a stream, a batch task until its result
is recorded) renews the row's `renewed_at` (`renew_held`, run with the sweep by the app's reservation
keeper, several times per stale period). `sweep_stale` releases only reservations whose holder has
been silent for the stale period: the reservations of calls that died with their process. So a long
stream is never swept, and a crash never keeps credit locked for longer than one stale period after
the last renewal.

    settle(..., guard=g)            also runs the guard's write in the same transaction; if the guard
                                    refuses (e.g. the batch task is no longer this worker's), nothing
                                    is written and SettlementRefused is raised: a batch task is
                                    billed exactly when its result is recorded

On SQLite the settlements asked for while the writer is busy go in one block (settle_blocks.py:
LedgerWrites.settle_block, one writer operation; the calls' and the guarded ones apart), each with
its own outcome.

Each write is one script of statements (ledger_writes.py) with one transaction path per store: on
the default SQLite store the group-commit writer (batchin/store/group_commit.py, the hot path; the
audit log and the batch store share it; with `serve --workers N` the supervisor's one writer, sent
by name: batchin/store/write_relay.py), elsewhere SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

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
from batchin.core.billing.ledger_writes import LedgerWrites
from batchin.core.billing.money import cents_to_units
from batchin.core.billing.reserve_blocks import ReserveBlocks
from batchin.core.billing.settle_blocks import SettlementBlocks
from batchin.core.clock import month_of, utcnow
from batchin.core.context import Principal
from batchin.core.random_ids import uuid7_text
from batchin.errors import InvalidRequest
from batchin.store.database import Database
from batchin.store.group_commit import GroupCommitWriter, sqlite_file
from batchin.store.named_writes import Write, named_write
from batchin.store.statements import Script, Transactions, run_script
from batchin.store.tables import key_spend, reservations, users, video_jobs

# The writes another process's SQLite writer may run for this one (serve --workers N, where the
# supervisor holds the one writer: batchin/store/write_relay.py), by LedgerWrites method name.
_RELAYED = frozenset(
    {"reserve", "reserve_block", "settle", "settle_block", "release", "release_silent", "renew"}
)
_SQLITE_WRITES = LedgerWrites("sqlite")


@named_write
def _ledger_write(cur: sqlite3.Cursor, method: str, *args: object) -> object:
    if method not in _RELAYED:
        raise ValueError(f"{method!r} is not a ledger write")
    script: Script[object] = getattr(_SQLITE_WRITES, method)(*args)
    return run_script(cur, script)


class LedgerService:
    def __init__(self, database: Database, writer: GroupCommitWriter | None = None) -> None:
        """`writer`: the SQLite store's writer when it is not this process's own (an API process
        of `serve --workers N` writes through its supervisor's: write_relay.RelayedWriter)."""
        self._db = database
        self.sqlite_writer: GroupCommitWriter | None = None
        if database.is_sqlite:
            path = sqlite_file(database)
            if path is None:
                raise ValueError("the SQLite ledger needs a database file")
            # Shared with the audit log and the batch store: their writes join the ledger's batches.
            self.sqlite_writer = writer or GroupCommitWriter(path)
        # Urgent: a call waits for its reservation before the engine runs and for its settlement
        # before its answer; each is a few rows (the writer may commit them on the event loop).
        self._transactions = Transactions(database, self.sqlite_writer, urgent=True)
        self._writes = LedgerWrites(database.dialect)
        # Reservations held by live calls of this process: renewed by `renew_held`, never swept here.
        self._held_here: set[str] = set()
        # On SQLite, settlements asked for while the writer is busy are written together.
        self._blocks: SettlementBlocks | None = None
        self._reserves: ReserveBlocks | None = None
        if self.sqlite_writer is not None:
            self._reserves = ReserveBlocks(self.sqlite_writer, self._transactions, _ledger_write)
            self._blocks = SettlementBlocks(
                self.sqlite_writer, self._writes, self._transactions, _ledger_write
            )

    @property
    def live_reservations(self) -> int:
        """How many reservations live calls of this process hold."""
        return len(self._held_here)

    async def reserve(
        self,
        principal: Principal,
        amount_units: int,
        *,
        reservation_id: str | None = None,
        held_here: bool = True,
    ) -> Reservation:
        """Hold `amount_units`. A caller that must find the reservation again after a crash (a batch
        task) names it with `reservation_id`, unique per attempt. `held_here=False`: a durable row
        holds it, not a call of this process (a video job, recovered by its own worker), so this
        process does not renew it."""
        if amount_units < 0:
            raise InvalidRequest("A reservation cannot be negative.")
        now = utcnow()
        reservation = Reservation(
            reservation_id or uuid7_text(),  # time-ordered: index appends (random_ids)
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
            raise budget_refusal(reservation.month, budget_units)
        if self._reserves is not None:
            # With the other calls' reservations asked for meanwhile (reserve_blocks.py).
            await self._reserved_on_writer(
                self._reserves.join(PendingReserve(reservation, budget_units), now), reservation
            )
        else:
            write = self._transactions.start(self._writes.reserve(reservation, budget_units, now))
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                await asyncio.shield(self._release_once_written(write, reservation))
                raise
        if held_here:
            self._held_here.add(reservation.id)
        return reservation

    async def check_funds(self, principal: Principal, amount_units: int) -> None:
        """Refuse (402, as `reserve` would) a caller who cannot cover `amount_units` now. A read, for
        a call that learns its price only after costly work (decoding an upload): a caller who could
        not pay anyway is refused before that work. Its reservation afterwards still decides."""
        month = month_of(utcnow())
        async with self._db.read() as conn:
            balance = await conn.scalar(select(users.c.balance_units).where(users.c.id == principal.user_id))
            spent = await conn.scalar(
                select(key_spend.c.spent_units).where(
                    key_spend.c.key_id == principal.key_id, key_spend.c.month == month
                )
            )
        if principal.monthly_budget_cents is not None:
            budget_units = cents_to_units(principal.monthly_budget_cents)
            if (spent or 0) + amount_units > budget_units:
                raise budget_refusal(month, budget_units)
        if balance is None or balance < amount_units:
            raise balance_refusal()

    async def _reserved_on_writer(self, write: asyncio.Future[None], reservation: Reservation) -> None:
        """Wait for a reservation queued on the SQLite writer, without a shield per call: cancelling
        `write` only drops its outcome (the queued reserve runs anyway). A caller cancelled while
        waiting queues a release right behind it instead of waiting for that outcome: the writer
        runs one process's operations in the order they were queued, so the release finds the
        reservation held (and releases it) if the reserve committed, and nothing if it was refused
        or failed (a release of no held row writes nothing) — the reservation is released at once,
        as `_release_once_written` does on the other path."""
        try:
            await write
        except asyncio.CancelledError:
            # A failed release leaves the reservation to the sweep; the caller's cancel stands.
            with contextlib.suppress(Exception):
                await asyncio.shield(self.release(reservation))
            raise

    async def _release_once_written(self, write: asyncio.Future[None], reservation: Reservation) -> None:
        """The caller of a reserve gave up while its write was queued or under way: the write may
        still commit, and then the reservation is released at once, not one stale period later."""
        try:
            await write
        except Exception:
            return  # refused (402) or failed: nothing is held
        await self.release(reservation)

    async def settle(self, reservation: Reservation, usage: UsageRecord) -> int:
        """Charge the call; returns the units charged (0 if this reservation was already closed)."""
        charged = max(0, min(usage.cost_units, reservation.amount_units))
        if self._blocks is None:
            closed = await self._close(
                reservation, self._writes.settle(reservation, usage, charged, utcnow())
            )
            return charged if closed else 0
        # On SQLite one operation of the writer's next transaction with the other calls' settlements
        # asked for meanwhile (settle_blocks.py); it runs whatever becomes of the caller.
        try:
            outcome = await self._blocks.join(GuardedSettlement(reservation, usage, charged))
        finally:
            self._held_here.discard(reservation.id)
        return charged if outcome else 0

    async def settle_guarded(
        self, reservation: Reservation, usage: UsageRecord, guard: SettleGuard
    ) -> int | None:
        """Charge the call and apply `guard`'s write in one transaction. Returns the units charged,
        None if the reservation was already closed (nothing written, guard not run); raises
        SettlementRefused if the guard refused."""
        charged = max(0, min(usage.cost_units, reservation.amount_units))
        if self._blocks is None:
            settle = self._writes.settle(reservation, usage, charged, utcnow(), guard)
            closed = await self._close(reservation, settle)
            return charged if closed else None
        # On SQLite the settlements asked for while the writer is busy are one operation of its
        # next transaction (settle_blocks.py): a batch dispatcher's group commit.
        try:
            outcome = await asyncio.shield(
                self._blocks.join(GuardedSettlement(reservation, usage, charged, guard))
            )
        finally:
            self._held_here.discard(reservation.id)
        if outcome is False:
            raise SettlementRefused(reservation.id)
        return charged if outcome else None

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
        return await self._close(reservation, self._write("release", reservation, utcnow()))

    async def _close(self, reservation: Reservation, script: Script[bool] | Write) -> bool:
        """Run a settle or release to its end even if the caller is cancelled meanwhile (on
        PostgreSQL a cancelled transaction rolls back, leaving the reservation held until the sweep).
        Whatever the outcome, no call of this process holds the reservation any more: one that
        failed to close is left to the sweeper, never renewed forever."""
        try:
            return await self._transactions.run_to_end(script)
        finally:
            self._held_here.discard(reservation.id)

    def _write(self, method: str, *args: object) -> Script[Any] | Write:
        """LedgerWrites' `method` with `args`: by name on the SQLite writer (so that it can run
        in another process's writer), else the script itself."""
        if self.sqlite_writer is not None:
            return _ledger_write(method, *args)
        script: Script[Any] = getattr(self._writes, method)(*args)
        return script

    async def renew_held(self, *, now: datetime | None = None) -> int:
        """Mark the reservations of this process's live calls alive. Returns how many rows it
        renewed (reservations closed meanwhile are skipped)."""
        held = sorted(self._held_here)
        if not held:
            return 0
        # Not urgent: no answer waits for it, and it may name thousands of rows (batch tasks').
        return await self._transactions.run(self._write("renew", held, now or utcnow()), urgent=False)

    async def sweep_stale(self, older_than_seconds: float, *, now: datetime | None = None) -> int:
        """Release reservations whose holder has shown no sign of life for `older_than_seconds`:
        calls whose process died. Returns how many."""
        now = now or utcnow()
        silent_since = now - timedelta(seconds=older_than_seconds)
        # A queued or running video job legitimately holds its reservation for as long as it waits;
        # its own recovery settles or releases it.
        live_jobs = select(video_jobs.c.reservation_id).where(
            video_jobs.c.status.in_(("queued", "in_progress"))
        )
        last_sign_of_life = func.coalesce(reservations.c.renewed_at, reservations.c.created_at)
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    select(reservations).where(
                        reservations.c.status == "held",
                        last_sign_of_life < silent_since,
                        reservations.c.id.not_in(live_jobs),
                    )
                )
            ).all()
        released = 0
        for row in rows:
            if row.id in self._held_here:
                continue  # a live call of this process holds it, whatever its last renewal says
            stale = Reservation(row.id, row.user_id, row.key_id, row.month, row.amount_units)
            released += int(await self._close(stale, self._write("release_silent", stale, silent_since, now)))
        return released

    async def close(self) -> None:
        if self.sqlite_writer is not None:
            await self.sqlite_writer.close()
