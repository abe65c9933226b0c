"""Calls' reservations written together on the SQLite writer: the ledger's group commit of them.

The reservations asked for while the writer is busy with one transaction are one operation of its
next (LedgerWrites.reserve_block): one savepoint instead of one each, the key's spend and the
balance moved one reservation at a time (each decides its own), the reservation rows in one
executemany. Each keeps its own outcome, as if written alone: held, or refused naming the limit.
The block is a named write of plain data, so the writer may be another process's (serve --workers N:
store/write_relay.py). It is urgent (the engine waits for it), so it closes at `_BLOCK_MAX` to keep
one that commits on the event loop short.

A block that fails as a whole (a store error in one of its rows: a reservation id taken) wrote
nothing, so each reservation whose caller still waits is written again on its own; one whose caller
is gone is not (its caller queued a release, which then finds nothing held either).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from batchin.core.billing.ledger_records import PendingReserve, balance_refusal, budget_refusal
from batchin.core.clock import utcnow
from batchin.store.group_commit import GroupCommitWriter
from batchin.store.named_writes import NamedWrite
from batchin.store.statements import Transactions

__all__ = ["ReserveBlocks"]

# As a calls' settlement block (settle_blocks.py), for the same reason.
_BLOCK_MAX = 4


@dataclass(slots=True)
class _Block:
    reserves: list[PendingReserve] = field(default_factory=list)
    futures: list[asyncio.Future[None]] = field(default_factory=list)


class ReserveBlocks:
    """The block waiting for one SQLite writer. `by_name`: the ledger's named write (a LedgerWrites
    method by name)."""

    def __init__(self, writer: GroupCommitWriter, transactions: Transactions, by_name: NamedWrite) -> None:
        self._writer = writer
        self._transactions = transactions
        self._by_name = by_name
        self._waiting: _Block | None = None

    def join(self, reserve: PendingReserve, now: datetime | None = None) -> asyncio.Future[None]:
        """Add `reserve` to the block waiting for the writer (opening one if none waits or it is
        full); the future resolves once it is held and committed, or raises PaymentRequired. Once
        joined it is written whatever becomes of the caller (cancelling the future drops the
        outcome: the writer runs one process's operations in the order they were queued, so a
        release queued after this finds it held if it was). `now`: the caller's clock reading
        (the ledger's, for the month), the time of a block this opens: a block's rows are stamped
        with its opening, which needs no reading of its own then."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        block = self._waiting
        if block is None or len(block.reserves) >= _BLOCK_MAX:
            block = self._waiting = self._open(now or utcnow())
        block.reserves.append(reserve)
        block.futures.append(future)
        return future

    def _open(self, now: datetime) -> _Block:
        block = _Block()

        def taken() -> None:  # on the event loop: later reservations go to a new block
            if self._waiting is block:
                self._waiting = None

        operation = self._by_name("reserve_block", block.reserves, now)
        written = self._writer.submit(operation, on_taken=taken, urgent=True)
        written.add_done_callback(partial(self._deliver, block))
        return block

    @staticmethod
    def _refusal_of(one: PendingReserve, refused: str | None) -> Exception | None:
        if refused is None:
            return None
        if refused == "budget" and one.budget_units is not None:
            return budget_refusal(one.reservation.month, one.budget_units)
        return balance_refusal()

    def _deliver(self, block: _Block, done: asyncio.Future[list[str | None]]) -> None:
        if not done.cancelled() and done.exception() is None:
            for one, future, refused in zip(block.reserves, block.futures, done.result(), strict=True):
                if future.done():
                    continue
                error = self._refusal_of(one, refused)
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
            return
        for one, future in zip(block.reserves, block.futures, strict=True):
            if not future.done():
                self._write_alone(one, future)

    def _write_alone(self, one: PendingReserve, future: asyncio.Future[None]) -> None:
        write = self._by_name("reserve", one.reservation, one.budget_units, utcnow())
        written: asyncio.Future[None] = self._transactions.start(write)

        def deliver(done: asyncio.Future[None]) -> None:
            if future.done():
                return
            if done.cancelled():
                future.set_exception(RuntimeError("the reservation's write was cancelled"))
            elif (error := done.exception()) is not None:
                future.set_exception(error)
            else:
                future.set_result(None)

        written.add_done_callback(deliver)
