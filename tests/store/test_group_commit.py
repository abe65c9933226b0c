"""The SQLite group-commit writer (batchin/store/group_commit.py) on a real database file: writes
queued together commit in one transaction (a small batch of urgent writes on the event loop; a
large one, one not urgent or one meeting a busy store on the writer thread), a refused one is
rolled back alone, and a process killed after a commit keeps exactly what was committed."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from batchin.store import group_commit
from batchin.store.group_commit import GroupCommitWriter


def _table(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, tx INTEGER)")


def _rows(path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as conn:
        return sorted(conn.execute("SELECT k, tx FROM t").fetchall())


def _insert(key: str) -> object:
    def operation(cur: sqlite3.Cursor) -> str:
        # tx: the rows this operation saw before its own; operations of one transaction see their
        # predecessors' uncommitted rows.
        cur.execute("INSERT INTO t (k, tx) VALUES (?, (SELECT count(*) FROM t))", (key,))
        return threading.current_thread().name

    return operation


async def test_writes_queued_together_share_one_transaction_on_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    _table(path)
    writer = GroupCommitWriter(str(path))
    try:
        refused_error = sqlite3.IntegrityError("refused")

        def refused(cur: sqlite3.Cursor) -> None:
            cur.execute("INSERT INTO t (k, tx) VALUES ('bad', -1)")
            raise refused_error

        futures = [
            writer.submit(_insert("a"), urgent=True),
            writer.submit(refused, urgent=True),
            writer.submit(_insert("b"), urgent=True),
        ]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        # A batch this small commits on the event loop's thread, without a hand-off.
        loop_thread = threading.current_thread().name
        assert outcomes[0] == outcomes[2] == loop_thread
        assert outcomes[1] is refused_error
        # 'b' saw 'a' (count 1) inside the same transaction; the refused row is gone.
        assert _rows(path) == [("a", 0), ("b", 1)]
        assert await writer.run(_insert("c"), urgent=True) == loop_thread
        with pytest.raises(sqlite3.IntegrityError):  # alone in its transaction: rolled back too
            await writer.run(refused, urgent=True)
    finally:
        await writer.close()
    assert _rows(path) == [("a", 0), ("b", 1), ("c", 2)]
    assert not any(t.name == "batchin-ledger" and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize("urgent", [True, False], ids=["on the loop", "on the thread"])
async def test_the_last_operation_of_a_batch_refused_is_rolled_back_alone(
    tmp_path: Path, urgent: bool
) -> None:
    # The last operation's savepoint is left to COMMIT (no RELEASE): its refusal still undoes
    # only its own writes, and the transaction commits the others.
    path = tmp_path / "w.db"
    _table(path)
    writer = GroupCommitWriter(str(path))
    try:
        refused_error = sqlite3.IntegrityError("refused")

        def refused(cur: sqlite3.Cursor) -> None:
            cur.execute("INSERT INTO t (k, tx) VALUES ('bad', -1)")
            cur.execute("INSERT INTO t (k, tx) VALUES ('worse', -2)")
            raise refused_error

        futures = [
            writer.submit(_insert("a"), urgent=urgent),
            writer.submit(_insert("b"), urgent=urgent),
            writer.submit(refused, urgent=urgent),
        ]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        assert outcomes[2] is refused_error
        assert _rows(path) == [("a", 0), ("b", 1)]
        await writer.run(_insert("c"), urgent=urgent)  # the next transaction starts clean
    finally:
        await writer.close()
    assert _rows(path) == [("a", 0), ("b", 1), ("c", 2)]


@pytest.mark.parametrize("urgent", [True, False], ids=["on the loop", "on the thread"])
async def test_the_first_operation_of_a_batch_refused_is_rolled_back_alone(
    tmp_path: Path, urgent: bool
) -> None:
    # The first operation runs without a savepoint: its refusal rolls back the transaction, which
    # held only its writes, and the others run in a new one.
    path = tmp_path / "w.db"
    _table(path)
    writer = GroupCommitWriter(str(path))
    try:
        refused_error = sqlite3.IntegrityError("refused")

        def refused(cur: sqlite3.Cursor) -> None:
            cur.execute("INSERT INTO t (k, tx) VALUES ('bad', -1)")
            raise refused_error

        futures = [
            writer.submit(refused, urgent=urgent),
            writer.submit(_insert("a"), urgent=urgent),
            writer.submit(_insert("b"), urgent=urgent),
        ]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        assert outcomes[0] is refused_error
        assert outcomes[1] == outcomes[2] == (threading.current_thread().name if urgent else "batchin-ledger")
    finally:
        await writer.close()
    assert _rows(path) == [("a", 0), ("b", 1)]


class _BusyOnBegin(sqlite3.Cursor):
    """A cursor whose `BEGIN IMMEDIATE` finds the store busy while `busy` holds a turn."""

    busy: list[None] = []

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:  # type: ignore[override]
        if sql == "BEGIN IMMEDIATE" and self.busy:
            self.busy.pop()
            raise sqlite3.OperationalError("database is locked")
        return super().execute(sql, *args)  # type: ignore[arg-type]


class _BusyConnection(sqlite3.Connection):
    def cursor(self, factory: type[sqlite3.Cursor] = _BusyOnBegin) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory)


async def test_the_rest_of_a_batch_whose_first_operation_failed_waits_for_a_busy_store_in_the_queue(
    tmp_path: Path,
) -> None:
    # On the loop, the new transaction for the rest of the batch cannot wait for the lock: the
    # rest go back to the queue (here the next loop batch takes them), in their order.
    path = tmp_path / "w.db"
    _table(path)
    writer = GroupCommitWriter(str(path))
    writer._conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, factory=_BusyConnection
    )
    _BusyOnBegin.busy[:] = [None]
    try:
        refused_error = sqlite3.IntegrityError("refused")

        def refused(cur: sqlite3.Cursor) -> None:
            cur.execute("INSERT INTO t (k, tx) VALUES ('bad', -1)")
            raise refused_error

        futures = [
            writer.submit(refused, urgent=True),
            writer.submit(_insert("a"), urgent=True),
            writer.submit(_insert("b"), urgent=True),
        ]
        outcomes = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 30)
        assert _BusyOnBegin.busy == []  # the busy store was met
        assert outcomes[0] is refused_error
        assert outcomes[1] == outcomes[2] == threading.current_thread().name
    finally:
        await writer.close()
    assert _rows(path) == [("a", 0), ("b", 1)]


async def test_a_large_batch_one_not_urgent_and_every_nth_small_one_commit_on_the_writer_thread(
    tmp_path: Path,
) -> None:
    path = tmp_path / "w.db"
    _table(path)
    writer = GroupCommitWriter(str(path))
    try:
        large = group_commit._INLINE_MAX + 1
        threads = await asyncio.gather(*(writer.submit(_insert(f"l{i}"), urgent=True) for i in range(large)))
        assert set(threads) == {"batchin-ledger"}
        # Small batches one after another: the thread takes one in _THREAD_EVERY (its COMMIT runs
        # the automatic checkpoint the loop's commits skip).
        small = [await writer.run(_insert(f"s{i}"), urgent=True) for i in range(group_commit._THREAD_EVERY)]
        assert small.count("batchin-ledger") == 1
        assert small.count(threading.current_thread().name) == group_commit._THREAD_EVERY - 1
        # A write not marked urgent (bulk rows, trace rows: of any size) never holds up the loop.
        assert await writer.run(_insert("bulk")) == "batchin-ledger"
    finally:
        await writer.close()
    assert len(_rows(path)) == large + group_commit._THREAD_EVERY + 1


async def test_a_batch_on_the_thread_for_its_own_reasons_counts_as_the_threads_turn(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    _table(path)
    writer = GroupCommitWriter(str(path))
    try:
        every = group_commit._THREAD_EVERY
        loop_thread = threading.current_thread().name
        first = [await writer.run(_insert(f"a{i}"), urgent=True) for i in range(every - 1)]
        # Trace rows, say: not urgent, so on the thread, whose COMMIT runs the automatic checkpoint.
        assert await writer.run(_insert("background")) == "batchin-ledger"
        # The count starts again: the small batches that follow need not go to the thread for it.
        then = [await writer.run(_insert(f"b{i}"), urgent=True) for i in range(every - 1)]
        assert set(first) == set(then) == {loop_thread}
        assert await writer.run(_insert("turn"), urgent=True) == "batchin-ledger"
    finally:
        await writer.close()
    assert len(_rows(path)) == 2 * every


async def test_a_small_batch_waits_for_a_busy_store_on_the_thread_not_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    _table(path)
    writer = GroupCommitWriter(str(path))
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        await writer.run(_insert("first"), urgent=True)  # the connection exists, set for the loop
        other.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
        other.execute("INSERT INTO t (k, tx) VALUES ('other', -1)")
        waiting = writer.submit(_insert("second"), urgent=True)
        await asyncio.sleep(0.1)  # the loop keeps turning while the write waits for the lock
        assert not waiting.done()
        other.execute("COMMIT")
        assert await waiting == "batchin-ledger"
    finally:
        other.close()
        await writer.close()
    assert _rows(path) == [("first", 0), ("other", -1), ("second", 2)]


async def test_close_commits_what_is_queued_first(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    _table(path)
    writer = GroupCommitWriter(str(path))
    queued = [writer.submit(_insert(f"k{i}"), urgent=i < 2) for i in range(group_commit._INLINE_MAX + 3)]
    await writer.close()  # nothing awaited before: the batches are still to be taken
    assert all(future.done() and future.exception() is None for future in queued)
    assert len(_rows(path)) == len(queued)


async def test_a_failed_transaction_fails_every_operation_in_it(tmp_path: Path) -> None:
    writer = GroupCommitWriter(str(tmp_path / "missing-dir" / "w.db"))  # cannot be opened
    try:
        results = await asyncio.gather(
            writer.run(_insert("a"), urgent=True), writer.run(_insert("b")), return_exceptions=True
        )
        assert all(isinstance(r, sqlite3.OperationalError) for r in results)
    finally:
        await writer.close()


_KILLED = """
import asyncio, os, signal, sqlite3, sys
from batchin.store import group_commit
from batchin.store.group_commit import GroupCommitWriter

async def main() -> None:
    writer = GroupCommitWriter(sys.argv[1])
    def insert(key):
        return lambda cur: cur.execute("INSERT INTO t (k, tx) VALUES (?, 0)", (key,))
    await asyncio.gather(*(writer.run(insert(f"k{i}")) for i in range(20)))
    print("committed", flush=True)
    writer.submit(insert("late"))
    os.kill(os.getpid(), signal.SIGKILL)  # before the loop turns: the late write never ran

asyncio.run(main())
"""


def test_a_process_killed_after_a_group_commit_keeps_exactly_what_was_committed(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    _table(path)
    done = subprocess.run(
        [sys.executable, "-c", _KILLED, str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "committed"
    assert done.returncode == -9
    assert _rows(path) == sorted((f"k{i}", 0) for i in range(20))
