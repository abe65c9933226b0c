"""The SQLite group-commit writer (batchin/store/group_commit.py) on a real database file: writes
queued together commit in one transaction on its own thread, a refused one is rolled back alone,
and a process killed after a commit keeps exactly what was committed."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

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


async def test_writes_queued_together_share_one_transaction_on_the_writer_thread(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    _table(path)
    writer = GroupCommitWriter(str(path))
    try:
        refused_error = sqlite3.IntegrityError("refused")

        def refused(cur: sqlite3.Cursor) -> None:
            cur.execute("INSERT INTO t (k, tx) VALUES ('bad', -1)")
            raise refused_error

        futures = [writer.submit(_insert("a")), writer.submit(refused), writer.submit(_insert("b"))]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        assert outcomes[0] == outcomes[2] == "batchin-ledger"
        assert outcomes[1] is refused_error
        # 'b' saw 'a' (count 1) inside the same transaction; the refused row is gone.
        assert _rows(path) == [("a", 0), ("b", 1)]
        assert await writer.run(_insert("c")) == "batchin-ledger"
    finally:
        await writer.close()
    assert _rows(path) == [("a", 0), ("b", 1), ("c", 2)]
    assert not any(t.name == "batchin-ledger" and t.is_alive() for t in threading.enumerate())


async def test_a_failed_transaction_fails_every_operation_in_it(tmp_path: Path) -> None:
    writer = GroupCommitWriter(str(tmp_path / "missing-dir" / "w.db"))  # cannot be opened
    try:
        results = await asyncio.gather(
            writer.run(_insert("a")), writer.run(_insert("b")), return_exceptions=True
        )
        assert all(isinstance(r, sqlite3.OperationalError) for r in results)
    finally:
        await writer.close()


_KILLED = """
import asyncio, os, signal, sqlite3, sys
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
