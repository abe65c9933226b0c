"""The transparency log in the store: appends (group-committed), signed checkpoints, proofs.

One writer at a time: every append transaction first bumps the single `vaas_log_state` row, which
takes SQLite's write lock (BEGIN IMMEDIATE) or PostgreSQL's row lock until commit, so leaf indexes
are dense and two replicas never interleave. Within a process, appends queue and a single drain
task writes them in batches (one transaction for many records), which is what keeps the cost per
record small. Only the nodes an append closes are written; the frontier it needs is read back (at
most log2(n) rows) or reused from the previous batch when nobody else appended in between.

The append is one script of statements (batchin/store/statements.py). On the default SQLite store
it runs as one operation of the ledger's group-commit writer (batchin/store/group_commit.py), in the
same transaction as the ledger operations queued with it: through SQLAlchemy + aiosqlite its four
statements cost several ms of CPU per batch (each one is a thread hand-off). Elsewhere it runs
through SQLAlchemy; the statements and stored values are the same on both paths.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from batchin.core.audit import transparency as mt
from batchin.core.audit.canonical import canonical
from batchin.core.audit.keys import AuditKey
from batchin.core.clock import isoformat, utcnow
from batchin.store.database import Database
from batchin.store.group_commit import GroupCommitWriter, sqlite_file
from batchin.store.named_writes import named_write
from batchin.store.statements import Script, Statement, Transactions, bound, run_script
from batchin.store.tables import vaas_checkpoints, vaas_log_nodes, vaas_log_state, vaas_records

__all__ = ["LOG_ORIGIN", "Checkpoint", "LogRow", "TransparencyLog"]

LOG_ORIGIN = "batchin-vaas-log/v1"
_MAX_BATCH = 512

_BUMP = Statement(
    update(vaas_log_state)
    .where(vaas_log_state.c.id == 1)
    .values(tree_size=vaas_log_state.c.tree_size + bindparam("count"))
    .returning(vaas_log_state.c.tree_size)
)
_NODE = Statement(insert(vaas_log_nodes).values(**bound("level", "idx", "hash")))
_RECORD = Statement(
    insert(vaas_records).values(
        **bound("id", "leaf_index", "user_id", "key_id", "payload", "signature", "created_at")
    )
)


@functools.lru_cache(maxsize=256)
def _nodes_at(count: int) -> Statement:
    """The stored nodes at `count` (level, idx) keys (`_node_keys` gives the parameters): one
    equality pair per key, ORed, which SQLite answers with a primary-key search per key. A row-value
    IN over a VALUES list (what `tuple_(...).in_(...)` renders on SQLite) scans the whole table
    instead: ~70 ms at 400,000 nodes, paid on every append batch after another process appended
    (serve --workers N) and by every proof. One statement per count, compiled once each."""
    return Statement(
        select(vaas_log_nodes.c.level, vaas_log_nodes.c.idx, vaas_log_nodes.c.hash).where(
            or_(
                *(
                    and_(
                        vaas_log_nodes.c.level == bindparam(f"level_{n}"),
                        vaas_log_nodes.c.idx == bindparam(f"idx_{n}"),
                    )
                    for n in range(count)
                )
            )
        )
    )


def _node_keys(keys: Sequence[mt.NodeKey]) -> dict[str, int]:
    params: dict[str, int] = {}
    for n, (level, idx) in enumerate(keys):
        params[f"level_{n}"] = level
        params[f"idx_{n}"] = idx
    return params


_Frontier = tuple[int, dict[mt.NodeKey, bytes]]
_Appended = tuple[int, dict[mt.NodeKey, bytes], dict[mt.NodeKey, bytes]]  # (first index, known, made)
_Batch = list[tuple["LogRow", asyncio.Future[int]]]  # rows queued for the log, each with its index


@dataclass(frozen=True, slots=True)
class LogRow:
    """A signed record waiting for its place in the log."""

    record_id: str
    user_id: str | None
    key_id: str
    payload: bytes  # canonical JSON: the signed bytes and the leaf
    signature_hex: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    tree_size: int
    root_hash: str
    timestamp: str
    key_id: str
    signature: str  # hex

    @property
    def payload(self) -> dict[str, Any]:
        return {
            "origin": LOG_ORIGIN,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "timestamp": self.timestamp,
            "key_id": self.key_id,
        }


# An append of at most this many records is urgent: the calls' answers wait for it, and it is small
# enough to commit on the event loop (store/group_commit.py); a larger one is bulk (batch tasks').
_URGENT_ROWS = 4


class TransparencyLog:
    def __init__(self, database: Database, key: AuditKey, writer: GroupCommitWriter | None = None) -> None:
        """`writer`: the ledger's SQLite writer, shared so ledger and audit writes commit together
        (closed by the ledger). Without one, a SQLite file store gets a writer of its own."""
        self._db = database
        self._key = key
        self._queue: _Batch = []
        # Appends are written one batch at a time by loop callbacks (`_write_next`), not a task:
        # set from the first row queued while idle until the queue is empty again.
        self._draining = False
        self._idle: asyncio.Future[None] | None = None  # what `close` waits on while draining
        self._frontier: _Frontier = (-1, {})
        self._writer = writer
        self._owns_writer = False
        if writer is None and database.is_sqlite:
            path = sqlite_file(database)
            if path is not None:
                self._writer = GroupCommitWriter(path)
                self._owns_writer = True
        self._transactions = Transactions(database, self._writer)

    # -- appends -------------------------------------------------------------------------------

    async def append(self, row: LogRow) -> int:
        """Store `row` and add it to the log; returns its leaf index once committed."""
        return await asyncio.shield(self.submit(row))

    def submit(self, row: LogRow) -> asyncio.Future[int]:
        """Queue `row` for the log; the future gets its leaf index once committed. Once queued it
        is written whatever becomes of the caller (cancelling the future only drops the index)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._queue.append((row, future))
        if not self._draining:
            # Rows queued until the next loop turn go in one batch. Callbacks, not a task of their
            # own (the drain task this replaces: created per burst of appends, one a call at low
            # concurrency); no caller's cancellation can reach them either.
            self._draining = True
            loop.call_soon(self._write_next)
        return future

    def _write_next(self) -> None:
        """Start writing the next batch. One batch at a time: its outcome (`_written`) moves the
        frontier before the next is started, so nothing moves it while a batch is written."""
        if not self._queue:
            self._draining = False
            idle, self._idle = self._idle, None
            if idle is not None and not idle.done():
                idle.set_result(None)
            return
        batch, self._queue = self._queue[:_MAX_BATCH], self._queue[_MAX_BATCH:]
        rows = [row for row, _ in batch]
        # By name on the SQLite writer: it may be the supervisor's, shared by every API process.
        append = _named_append if self._writer is not None else _append
        try:
            # Urgent (the writer may commit it on the loop) only while it is a few calls' records.
            written = self._transactions.start(
                append(rows, self._frontier, utcnow()), urgent=len(rows) <= _URGENT_ROWS
            )
        except Exception as exc:  # not even queued: these rows fail, the queue goes on
            self._failed(batch, exc)
            asyncio.get_running_loop().call_soon(self._write_next)
            return
        written.add_done_callback(functools.partial(self._written, batch))

    def _written(self, batch: _Batch, done: asyncio.Future[_Appended]) -> None:
        error = RuntimeError("the log append was cancelled") if done.cancelled() else done.exception()
        if error is not None:
            self._failed(batch, error)
        else:
            size, known, made = done.result()
            # Only once committed: a failed batch leaves the frontier to be read again.
            self._remember(size + len(batch), known, made)
            for offset, (_, future) in enumerate(batch):
                if not future.done():
                    future.set_result(size + offset)
        self._write_next()

    def _failed(self, batch: _Batch, error: BaseException) -> None:
        self._frontier = (-1, {})  # unknown after a failed batch: read again by the next
        for _, future in batch:
            if not future.done():
                future.set_exception(error if isinstance(error, Exception) else RuntimeError(str(error)))

    def _remember(self, new_size: int, known: dict[mt.NodeKey, bytes], made: dict[mt.NodeKey, bytes]) -> None:
        merged = {**known, **made}
        self._frontier = (new_size, {key: merged[key] for key in mt.frontier_keys(new_size)})

    async def close(self) -> None:
        while self._draining:  # the queued appends are written first
            if self._idle is None:
                self._idle = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._idle)
        if self._owns_writer and self._writer is not None:
            await self._writer.close()

    # -- reads ---------------------------------------------------------------------------------

    async def nodes(self, keys: Sequence[mt.NodeKey]) -> dict[mt.NodeKey, bytes]:
        if not keys:
            return {}
        async with self._db.read() as conn:
            found = await _nodes_at(len(keys)).execute(conn, _node_keys(keys))
            return _node_hashes(found.fetchall())

    async def size(self) -> int:
        async with self._db.read() as conn:
            value = await conn.scalar(select(vaas_log_state.c.tree_size).where(vaas_log_state.c.id == 1))
        return int(value or 0)

    async def root(self, size: int) -> bytes:
        known = await self.nodes(mt.frontier_keys(size))
        return mt.root_hash(size, known.__getitem__)

    async def inclusion(self, index: int, size: int) -> tuple[bytes, list[bytes]]:
        """(the stored leaf hash, its audit path to the root of the first `size` leaves)."""
        known = await self.nodes(mt.inclusion_keys(index, size))
        return known[(0, index)], mt.inclusion_proof(index, size, known.__getitem__)

    async def consistency(self, first: int, second: int) -> list[bytes]:
        known = await self.nodes(mt.consistency_keys(first, second))
        return mt.consistency_proof(first, second, known.__getitem__)

    # -- checkpoints ---------------------------------------------------------------------------

    async def checkpoint(self, at_least: int = 0) -> Checkpoint:
        """The newest signed checkpoint, signing one for the current size when the log has grown
        past the newest (or past `at_least`)."""
        latest = await self.latest_checkpoint()
        size = await self.size()
        if latest is not None and latest.tree_size == size and size >= at_least:
            return latest
        root = await self.root(size)
        stamp = isoformat(utcnow()) or ""
        unsigned = Checkpoint(size, root.hex(), stamp, self._key.key_id, "")
        signature = self._key.sign(canonical(unsigned.payload)).hex()
        made = Checkpoint(size, root.hex(), stamp, self._key.key_id, signature)
        try:
            async with self._db.write() as conn:
                await conn.execute(insert(vaas_checkpoints).values(**_checkpoint_row(made)))
        except IntegrityError:
            pass  # another request signed this size first: publish theirs
        found = await self.checkpoint_at(size)
        return found or made

    async def latest_checkpoint(self) -> Checkpoint | None:
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    select(vaas_checkpoints).order_by(vaas_checkpoints.c.tree_size.desc()).limit(1)
                )
            ).first()
        return _checkpoint(row._mapping) if row else None

    async def checkpoint_at(self, size: int) -> Checkpoint | None:
        async with self._db.read() as conn:
            row = (
                await conn.execute(select(vaas_checkpoints).where(vaas_checkpoints.c.tree_size == size))
            ).first()
        return _checkpoint(row._mapping) if row else None


@named_write
def _named_append(
    cur: sqlite3.Cursor, rows: Sequence[LogRow], frontier: _Frontier, now: datetime
) -> _Appended:
    return run_script(cur, _append(rows, frontier, now))


def _append(rows: Sequence[LogRow], frontier: _Frontier, now: datetime) -> Script[_Appended]:
    """Bump the size (taking the log's write lock), write the leaves and the nodes they close."""
    bumped = (yield _BUMP, {"count": len(rows)}).fetchall()
    if len(bumped) != 1:
        raise RuntimeError("the transparency log's state row is missing")
    size = int(bumped[0][0]) - len(rows)
    cached_size, known = frontier
    if cached_size != size:
        keys = mt.frontier_keys(size)
        known = _node_hashes((yield _nodes_at(len(keys)), _node_keys(keys)).fetchall()) if keys else {}
    made = mt.append_nodes(size, (mt.leaf_hash(row.payload) for row in rows), known.__getitem__)
    yield _NODE, [{"level": level, "idx": idx, "hash": digest.hex()} for (level, idx), digest in made.items()]
    records = [
        {
            "id": row.record_id,
            "leaf_index": size + offset,
            "user_id": row.user_id,
            "key_id": row.key_id,
            "payload": row.payload.decode("utf-8"),
            "signature": row.signature_hex,
            "created_at": now,
        }
        for offset, row in enumerate(rows)
    ]
    yield _RECORD, records
    return size, known, made


def _node_hashes(rows: Sequence[Any]) -> dict[mt.NodeKey, bytes]:
    return {(int(level), int(idx)): bytes.fromhex(digest) for level, idx, digest in rows}


def _checkpoint_row(cp: Checkpoint) -> dict[str, Any]:
    return {
        "tree_size": cp.tree_size,
        "root_hash": cp.root_hash,
        "timestamp": cp.timestamp,
        "key_id": cp.key_id,
        "signature": cp.signature,
    }


def _checkpoint(row: Any) -> Checkpoint:
    return Checkpoint(
        int(row["tree_size"]), row["root_hash"], row["timestamp"], row["key_id"], row["signature"]
    )
