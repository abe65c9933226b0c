"""The SQLite store's write path: group commit on one dedicated thread (small urgent batches on the
event loop, below).

Through SQLAlchemy + aiosqlite a small write transaction costs ~1.4 ms of CPU (every statement is a
thread hand-off); a paid call needs two. Here every write operation (the ledger's, the audit log's,
the batch store's) queued while the previous batch was committing goes into the next batch: one
thread hand-off and one `BEGIN IMMEDIATE … COMMIT` per batch, plain sqlite3 statements inside, and a
SAVEPOINT per operation after the first, so one refusal or failure never affects its neighbours.
The statements are the same ones the SQLAlchemy path runs (batchin/store/statements.py), compiled
for SQLite once.

A small batch of urgent operations (a call's reservation, its settlement and receipt append at low
concurrency: writes of a few rows that the call's answer waits for) commits on the event loop
itself when SQLite's write lock is free at once: the hand-off to the thread and back (a queue put
waking the thread, which takes the core from the loop, the loop's self-pipe, a future) added
60-100 us to a 150-450 us transaction that the response waits for, and two voluntary and one
involuntary context switch (bench/profiles/c1_timeline_store5.txt). The
same connection and transaction, so the same durability; only the thread that runs it differs.
On the loop the connection never waits for the lock (busy timeout 0: a busy store sends the batch
to the thread, which waits as before) and never checkpoints (automatic checkpoints off: copying
16 MB of WAL must not stall every call in flight); every `_THREAD_EVERY`-th batch, every larger
one and every batch holding any other operation (bulk task rows, trace rows, claims: their size is
not bounded) still go to the thread, with automatic checkpoints on, so the WAL is checkpointed there;
a batch that went to the thread for any of these reasons counts as the thread's turn (at c=1 the
trace rows' flushes are the thread's turns, and no call waits for a hand-off).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy.engine import make_url

from batchin.store.database import SQLITE_PRAGMAS, Database

_MAX_BATCH = 512
# Batches of at most this many operations may commit on the event loop (see the module docstring);
# larger ones (high concurrency) keep the thread, where SQLite's C code runs outside the GIL.
_INLINE_MAX = 4
# At most this many batches in a row commit on the loop: the next goes to the thread even when small,
# as its COMMIT runs the automatic checkpoint that the loop's commits skip (a WAL of 4,000 pages gains
# ~16 calls' pages meanwhile). Any batch committed on the thread restarts the count: where the trace
# rows' flushes (every 0.2 s) reach the thread anyway, no call's own commit is sent there for it.
_THREAD_EVERY = 16
# The connection's settings on the loop / on the thread (those of SQLITE_PRAGMAS), set on a switch.
_ON_LOOP = "PRAGMA busy_timeout=0", "PRAGMA wal_autocheckpoint=0"
_ON_THREAD = "PRAGMA busy_timeout=30000", "PRAGMA wal_autocheckpoint=4000"
# The writer's page cache (KiB when negative): SQLite's default 2 MB holds little of the indexes that
# every call's rows go into (trace spans, usage logs, audit records: random keys), so each insert
# read its leaf page back from the file. One writer per server process: 64 MB at most, once.
_WRITER_PRAGMAS = ("PRAGMA cache_size=-65536",)


def sqlite_file(database: Database) -> str | None:
    """The file of a SQLite store (None for PostgreSQL or an in-memory database): what a
    group-commit writer opens."""
    if not database.is_sqlite:
        return None
    path = make_url(database.url).database
    return path if path and path != ":memory:" else None


Operation = Callable[[sqlite3.Cursor], Any]


@dataclass(slots=True)
class _Queued:
    operation: Operation
    future: asyncio.Future[Any]
    on_taken: Callable[[], None] | None = None
    urgent: bool = False


class GroupCommitWriter:
    """Runs operations on one sqlite3 connection, many to a transaction (see the module docstring)."""

    def __init__(self, path: str) -> None:
        self._path = path
        # Used by one thread at a time: the loop's inline batches and the writer thread's never
        # overlap (the flusher awaits each batch before the next).
        self._conn: sqlite3.Connection | None = None
        self._on_loop = False  # the connection's settings are _ON_LOOP's
        self._inline_left = _THREAD_EVERY
        self._pending: list[_Queued] = []
        # Batches are taken by loop callbacks, not a task of their own (`_flush`): set from the
        # first operation queued while idle until the queue is empty again.
        self._flushing = False
        self._idle: asyncio.Future[None] | None = None  # what `close` waits on while flushing
        # The writer thread's inbox: a batch and the future its outcomes go to, or None to stop.
        # A thread of our own rather than an executor: a batch costs one queue put and one
        # call_soon_threadsafe back, without an executor's futures chained to the loop's.
        self._inbox: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None

    async def run(self, operation: Operation, *, urgent: bool = False) -> Any:
        """Run `operation(cursor)` in the next batch's transaction; returns its result or raises
        what it raised (its own writes rolled back). `urgent`: see `submit`."""
        return await self.submit(operation, urgent=urgent)

    def submit(
        self,
        operation: Operation,
        *,
        on_taken: Callable[[], None] | None = None,
        urgent: bool = False,
    ) -> asyncio.Future[Any]:
        """Queue `operation` for the next batch; the future gets its outcome. Once queued it runs
        whatever becomes of the caller (cancelling the future only drops the outcome). `on_taken`
        is called on the event loop when the operation leaves the queue for its transaction: an
        operation that gathers work while it waits (the ledger's block of settlements) closes
        there, and what comes later goes to the next one. `urgent`: a call's answer waits for it
        and it is small (the ledger's reservation and settlement, a receipt's log append): a small
        batch holding one may commit on the loop. Anything else (bulk rows, trace rows, claims)
        stays on the thread, where it cannot hold up the calls in flight."""
        loop = asyncio.get_running_loop()
        queued = _Queued(operation, loop.create_future(), on_taken, urgent)
        self._pending.append(queued)
        if not self._flushing:
            self._flushing = True
            # Two turns of the loop before the first batch (what the flusher task it replaces took:
            # its first step, then a `sleep(0)`): operations that tasks woken alongside the first
            # submitter queue at once (a call's log append beside its settlement) join it.
            loop.call_soon(loop.call_soon, self._flush)
        return queued.future

    def _flush(self) -> None:
        """Commit the queued batches one after another, on the loop: a callback, not a task (a task
        per burst of writes, its steps and its registration cost more than the batches' own loop
        work at low concurrency). A batch for the thread hands over and `_from_thread` resumes
        here when its outcomes are back, so batches never overlap."""
        while self._pending:
            batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
            for queued in batch:
                if queued.on_taken is not None:
                    queued.on_taken()
            operations = [q.operation for q in batch]
            try:
                outcomes = self._apply_inline(operations) if self._inline(batch) else None
            except BaseException as exc:
                self._fail(batch, exc)
                if not isinstance(exc, Exception):
                    self._stop_flushing()
                    raise
                continue
            if outcomes is None:
                self._inline_left = _THREAD_EVERY  # its COMMIT runs the automatic checkpoint
                on_thread = self._on_thread(asyncio.get_running_loop(), partial(self._apply, operations))
                on_thread.add_done_callback(partial(self._from_thread, batch))
                return
            if len(outcomes) < len(batch):  # the rest could not begin at once (`_run`): queued again
                self._pending[:0] = batch[len(outcomes) :]
                batch = batch[: len(outcomes)]
            _deliver(batch, outcomes)
        self._stop_flushing()

    def _from_thread(self, batch: list[_Queued], done: asyncio.Future[list[tuple[bool, Any]]]) -> None:
        error = done.exception()  # a future of ours, never cancelled (see `_settle`)
        if error is not None:
            self._fail(batch, error)
        else:
            _deliver(batch, done.result())
        self._flush()

    @staticmethod
    def _fail(batch: list[_Queued], exc: BaseException) -> None:
        """The transaction itself failed: every operation in it did."""
        for queued in batch:
            if not queued.future.done():
                queued.future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))

    def _stop_flushing(self) -> None:
        self._flushing = False
        idle, self._idle = self._idle, None
        if idle is not None and not idle.done():
            idle.set_result(None)

    def _on_thread(self, loop: asyncio.AbstractEventLoop, work: Callable[[], Any]) -> asyncio.Future[Any]:
        """`work()` on the writer thread; its outcome on the returned future."""
        if self._thread is None:
            # A daemon: a writer nobody closed must not hold the interpreter open at exit (a
            # transaction it had not committed then rolls back, as in a crash).
            self._thread = threading.Thread(target=self._serve, name="batchin-ledger", daemon=True)
            self._thread.start()
        future: asyncio.Future[Any] = loop.create_future()
        self._inbox.put((work, future))
        return future

    def _serve(self) -> None:
        while (job := self._inbox.get()) is not None:
            work, future = job
            loop = future.get_loop()
            try:
                result = work()
            except BaseException as exc:  # the flusher's to handle, as it was raised
                loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, timeout=30, check_same_thread=False)
            for pragma in (*SQLITE_PRAGMAS, *_WRITER_PRAGMAS):
                conn.execute(pragma)
            self._conn = conn
            self._on_loop = False
        return self._conn

    def _settings(self, conn: sqlite3.Connection, *, on_loop: bool) -> None:
        if self._on_loop != on_loop:
            for pragma in _ON_LOOP if on_loop else _ON_THREAD:
                conn.execute(pragma)
            self._on_loop = on_loop

    @staticmethod
    def _inline(batch: list[_Queued]) -> bool:
        return len(batch) <= _INLINE_MAX and all(queued.urgent for queued in batch)

    def _apply_inline(self, operations: list[Operation]) -> list[tuple[bool, Any]] | None:
        """`_apply` on the event loop, if the write lock is free at once and this is not the
        turn of the thread (None: run it on the thread)."""
        self._inline_left -= 1
        if self._inline_left <= 0:
            return None
        conn = self._connection()
        self._settings(conn, on_loop=True)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # busy (another connection writes): the thread waits
            return None
        return self._run(conn, operations, on_loop=True)

    def _apply(self, operations: list[Operation]) -> list[tuple[bool, Any]]:
        conn = self._connection()
        self._settings(conn, on_loop=False)
        conn.execute("BEGIN IMMEDIATE")
        return self._run(conn, operations)

    @staticmethod
    def _run(
        conn: sqlite3.Connection, operations: list[Operation], *, on_loop: bool = False
    ) -> list[tuple[bool, Any]]:
        """The operations inside the open transaction, then COMMIT. Each after the first has a
        SAVEPOINT, so that its failure rolls back only its own writes; the first needs none: the
        transaction holds nothing else yet, so its failure rolls the transaction back and the rest
        run in a new one. The last savepoint is not released: COMMIT ends it with the transaction.
        (Two statements fewer a batch of several, three for a call's settlement and receipt.)
        On the loop, a new transaction that cannot begin at once (busy) ends the batch there: the
        outcomes so far come back, and `_flush` queues the rest again."""
        cur = conn.cursor()
        outcomes: list[tuple[bool, Any]] = []
        try:
            try:
                outcomes.append((True, operations[0](cur)))
            except Exception as exc:
                cur.execute("ROLLBACK")
                outcomes.append((False, exc))
                if len(operations) == 1:
                    return outcomes
                try:
                    cur.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError:
                    if not on_loop:  # the thread waited the busy timeout: the rest fail with it
                        raise
                    return outcomes
                return outcomes + GroupCommitWriter._run(conn, operations[1:], on_loop=on_loop)
            last = len(operations) - 1
            for position in range(1, len(operations)):
                cur.execute("SAVEPOINT op")
                try:
                    outcomes.append((True, operations[position](cur)))
                except Exception as exc:
                    cur.execute("ROLLBACK TO op")
                    outcomes.append((False, exc))
                if position != last:
                    cur.execute("RELEASE op")
            cur.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                cur.execute("ROLLBACK")
            raise
        finally:
            cur.close()
        return outcomes

    def commit_now(self, operations: list[Operation]) -> list[tuple[bool, Any]]:
        """Run `operations` in one transaction on the calling thread, for a server that is itself
        the only thread using this writer (store/write_relay.py): each one's (ok, result or error);
        a failure of the transaction itself is raised."""
        return self._apply(operations)

    async def close(self) -> None:
        while self._flushing:  # the queued batches commit first
            if self._idle is None:
                self._idle = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._idle)
        if self._thread is not None:
            await self._on_thread(asyncio.get_running_loop(), self._close_connection)
            self._inbox.put(None)
            self._thread.join()
            self._thread = None
        self._close_connection()  # opened on the loop by inline batches only, if the thread never ran

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _deliver(batch: list[_Queued], outcomes: list[tuple[bool, Any]]) -> None:
    for queued, (ok, value) in zip(batch, outcomes, strict=True):
        if queued.future.done():
            continue  # its caller gave up: only the outcome is dropped
        if ok:
            queued.future.set_result(value)
        else:
            queued.future.set_exception(value)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """On the loop: a batch's outcome to its flusher (unless that was cancelled meanwhile)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
