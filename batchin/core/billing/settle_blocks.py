"""Settlements written together on the SQLite writer: the ledger's group commit of settlements.

The settlements asked for while the writer is busy with one transaction are one operation of its
next (LedgerWrites.settle_block): one savepoint, the reservations closed one by one (each close
decides its settlement), the usage logs in one executemany, and one refund and rollup per row
instead of one each per settlement. The busier the store, the larger the blocks. Each settlement
keeps its own outcome, as if written alone: if the block fails as a whole (a store error in one of
its rows), each is written again on its own (the closes are conditional: none is charged twice), so
one bad row never fails its neighbours.

Two kinds of block, never mixed:
- calls' settlements (no guard): a named write (plain data), so the writer may be another
  process's (serve --workers N: store/write_relay.py); urgent (a call's answer waits for it), so
  a block closes at `_CALLS_BLOCK_MAX` to keep one that commits on the event loop short;
- guarded settlements (batch tasks'): a guard's statement cannot cross processes, so these run on
  this process's own writer, not urgent.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass, field
from functools import partial

from batchin.core.billing.ledger_records import GuardedSettlement, SettlementRefused
from batchin.core.billing.ledger_writes import LedgerWrites
from batchin.core.clock import utcnow
from batchin.store.group_commit import GroupCommitWriter, Operation
from batchin.store.named_writes import NamedWrite
from batchin.store.statements import Transactions, run_script

__all__ = ["SettlementBlocks"]

# A calls' block may commit on the event loop (group_commit.py: a batch of at most 4 urgent
# operations), so it closes at this many, as an urgent log append does (audit/log.py): what the
# loop may commit at once stays the few calls' rows the writer's inline batches were sized for, and
# a busier store's batches still go to the writer thread.
_CALLS_BLOCK_MAX = 4

# True: charged; None: the reservation was already closed (nothing written); False: its guard refused.
Settled = bool | None


@dataclass(slots=True)
class _Block:
    settlements: list[GuardedSettlement] = field(default_factory=list)
    futures: list[asyncio.Future[Settled]] = field(default_factory=list)


class SettlementBlocks:
    """The blocks waiting for one SQLite writer. `by_name`: the ledger's named write (a LedgerWrites
    method by name), what a calls' block and its settlements written alone are sent as."""

    def __init__(
        self,
        writer: GroupCommitWriter,
        writes: LedgerWrites,
        transactions: Transactions,
        by_name: NamedWrite,
    ) -> None:
        self._writer = writer
        self._writes = writes
        self._transactions = transactions
        self._by_name = by_name
        self._calls: _Block | None = None
        self._guarded: _Block | None = None

    def join(self, settlement: GuardedSettlement) -> asyncio.Future[Settled]:
        """Add `settlement` to the block of its kind waiting for the writer (opening one if none
        waits or a calls' block is full); the future gets its outcome. Once joined it is written
        whatever becomes of the caller (cancelling the future only drops the outcome)."""
        future: asyncio.Future[Settled] = asyncio.get_running_loop().create_future()
        if settlement.guard is None:
            block = self._calls
            if block is None or len(block.settlements) >= _CALLS_BLOCK_MAX:
                block = self._calls = self._open(calls=True)
        else:
            block = self._guarded or self._open(calls=False)
            self._guarded = block
        block.settlements.append(settlement)
        block.futures.append(future)
        return future

    def _open(self, *, calls: bool) -> _Block:
        block = _Block()

        def taken() -> None:  # on the event loop: later settlements go to a new block
            if self._calls is block:
                self._calls = None
            if self._guarded is block:
                self._guarded = None

        operation: Operation
        if calls:
            operation = self._by_name("settle_block", block.settlements, utcnow())
        else:

            def operation(cur: sqlite3.Cursor) -> list[Settled]:  # on the writer, the block closed
                return run_script(cur, self._writes.settle_block(block.settlements, utcnow()))

        written = self._writer.submit(operation, on_taken=taken, urgent=calls)
        written.add_done_callback(partial(self._deliver, block))
        return block

    def _deliver(self, block: _Block, done: asyncio.Future[list[Settled]]) -> None:
        if not done.cancelled() and done.exception() is None:
            for future, outcome in zip(block.futures, done.result(), strict=True):
                if not future.done():
                    future.set_result(outcome)
            return
        for settlement, future in zip(block.settlements, block.futures, strict=True):
            self._write_alone(settlement, future)

    def _write_alone(self, one: GuardedSettlement, future: asyncio.Future[Settled]) -> None:
        now = utcnow()
        written: asyncio.Future[bool]
        if one.guard is None:  # a call's: by name, as its block was
            written = self._transactions.start(
                self._by_name("settle", one.reservation, one.usage, one.charged, now)
            )
        else:
            written = self._transactions.start(
                self._writes.settle(one.reservation, one.usage, one.charged, now, one.guard)
            )

        def deliver(done: asyncio.Future[bool]) -> None:
            if future.done():
                return
            if done.cancelled():
                future.set_exception(RuntimeError("the settlement's write was cancelled"))
            elif isinstance(done.exception(), SettlementRefused):
                future.set_result(False)
            elif (error := done.exception()) is not None:
                future.set_exception(error)
            else:
                future.set_result(True if done.result() else None)

        written.add_done_callback(deliver)
