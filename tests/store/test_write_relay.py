"""One SQLite writer for several processes (batchin/store/write_relay.py): writes sent by name reach
the relay's writer and commit there, each caller learns its outcome only after the commit, a name
that is not a registered write never runs, and a writer that is gone fails its callers with a 503
instead of dropping their writes. The two ends run on one loop here (the wire is the real socket)."""

from __future__ import annotations

import asyncio
import os
import pickle
import sqlite3
import stat
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener
from pathlib import Path

import pytest

from batchin.core.billing.ledger import LedgerService
from batchin.core.billing.ledger_records import Reservation
from batchin.core.billing.money import UNITS_PER_CENT
from batchin.errors import PaymentRequired
from batchin.services import Services
from batchin.store.group_commit import sqlite_file
from batchin.store.named_writes import Write, named_write
from batchin.store.relay_wire import encode as _encode
from batchin.store.write_relay import WRITER_SOCKET, RelayedWriter, WriteRelay, WriterGone
from tests.conftest import MakeUser
from tests.core.billing.test_ledger import balance_units, principal_for, usage

_KEY = os.urandom(32)


@named_write
def _insert(cur: sqlite3.Cursor, key: str) -> str:
    cur.execute("INSERT INTO t (k) VALUES (?)", (key,))
    return threading.current_thread().name


@named_write
def _refuse(cur: sqlite3.Cursor, key: str) -> None:
    cur.execute("INSERT INTO t (k) VALUES (?)", (key,))
    raise PaymentRequired("no credit", param="budget")


def _rows(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return sorted(k for (k,) in conn.execute("SELECT k FROM t"))


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[WriteRelay]:
    database = tmp_path / "w.db"
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA journal_mode=WAL")  # as the store is
        conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    served = WriteRelay(tmp_path / WRITER_SOCKET, _KEY, str(database))
    yield served
    await served.close()


def _client(relay: WriteRelay) -> RelayedWriter:
    return RelayedWriter(relay.database_file, relay.address)


async def test_writes_by_name_from_two_processes_commit_on_the_one_writer_before_their_ack(
    relay: WriteRelay,
) -> None:
    assert stat.S_IMODE(os.stat(relay.address[0]).st_mode) == 0o600
    database = Path(relay.database_file)
    first, second = _client(relay), _client(relay)
    seen_at_ack: dict[str, list[str]] = {}

    async def write(writer: RelayedWriter, key: str) -> str:
        thread = await writer.run(_insert(key))
        seen_at_ack[key] = _rows(database)  # another connection: only committed rows
        return str(thread)

    try:
        threads = await asyncio.gather(
            *(write(w, f"{name}{n}") for n in range(5) for name, w in (("a", first), ("b", second)))
        )
        refused = second.run(_refuse("refused"))
        with pytest.raises(PaymentRequired) as caught:
            await refused
    finally:
        await first.close()
        await second.close()
    assert set(threads) == {"batchin-ledger"}  # the relay's writer thread, not a local one
    assert first._thread is None  # no writer of their own
    assert second._thread is None
    for key, rows in seen_at_ack.items():
        assert key in rows
    assert (caught.value.message, caught.value.param) == ("no credit", "budget")
    assert _rows(database) == sorted(f"{name}{n}" for n in range(5) for name in "ab")


async def test_only_registered_writes_from_holders_of_the_key_run(relay: WriteRelay) -> None:
    with pytest.raises(AuthenticationError):
        await asyncio.to_thread(Client, relay.address[0], family="AF_UNIX", authkey=b"wrong")
    writer = _client(relay)  # the relay still accepts those who hold the key
    try:
        with pytest.raises(LookupError):
            await writer.run(Write("os:system", ("touch /tmp/never",)))
        with pytest.raises(LookupError):
            await writer.run(Write("batchin.store.database:Database", ()))
        assert await writer.run(_insert("after")) == "batchin-ledger"  # the connection still serves
    finally:
        await writer.close()


async def test_the_relay_keeps_reading_while_its_writer_waits_for_the_write_lock(relay: WriteRelay) -> None:
    # An API process's own transaction (a retention delete) holds SQLite's write lock and needs
    # this process's event loop to finish: sending writes to a relay that stopped reading while its
    # writer waited for that lock would block the loop (1 MiB is more than a socket buffers).
    holder = sqlite3.connect(relay.database_file, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    writer = _client(relay)
    try:
        waiting = writer.submit(_insert("first"))  # the relay's writer now waits for the lock
        await asyncio.sleep(0.05)
        pending = [writer.submit(_insert(f"{n}" + "x" * 65536)) for n in range(16)]
        await asyncio.sleep(0.05)
        holder.execute("COMMIT")  # only reached if the loop kept running
        assert set(await asyncio.gather(waiting, *pending)) == {"batchin-ledger"}
    finally:
        holder.close()
        await writer.close()


async def test_a_write_sent_by_a_process_that_then_died_is_still_committed(relay: WriteRelay) -> None:
    conn = await asyncio.to_thread(Client, relay.address[0], family="AF_UNIX", authkey=_KEY)
    conn.send([(1, _insert("orphan").name, ("orphan",))])
    conn.close()  # the API process is gone before the writer replies
    writer = _client(relay)
    try:
        await writer.run(_insert("later"))  # queued after the orphan: committed after it, or with it
    finally:
        await writer.close()
    assert _rows(Path(relay.database_file)) == ["later", "orphan"]


async def test_writes_fail_with_a_503_when_the_writer_is_gone(tmp_path: Path) -> None:
    database = tmp_path / "w.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    address = (str(tmp_path / WRITER_SOCKET), _KEY)
    listener = Listener(address[0], family="AF_UNIX", authkey=_KEY)

    def accept_then_die() -> None:  # a writer that takes a write and dies before committing it
        conn = listener.accept()
        conn.recv()
        conn.close()
        listener.close()

    dying = threading.Thread(target=accept_then_die)
    dying.start()
    writer = RelayedWriter(str(database), address)
    try:
        with pytest.raises(WriterGone) as gone:
            await writer.run(_insert("lost"))
        assert gone.value.status == 503
        await asyncio.to_thread(dying.join)
        with pytest.raises(WriterGone):  # nobody listens any more: refused at once, not queued
            await writer.run(_insert("new"))

        def local(cur: sqlite3.Cursor) -> str:  # not a named write: this process's own writer
            cur.execute("INSERT INTO t (k) VALUES ('local')")
            return "local"

        assert await writer.run(local) == "local"
    finally:
        await writer.close()
    assert _rows(database) == ["local"]


async def test_the_ledger_reserves_refuses_and_settles_through_the_relay(
    services: Services, make_user: MakeUser, tmp_path: Path
) -> None:
    path = sqlite_file(services.database)
    if path is None:
        pytest.skip("the relay serves a SQLite file store")
    user = await make_user(credit_cents=1)
    principal = await principal_for(services, user.id)
    relay = WriteRelay(tmp_path / WRITER_SOCKET, _KEY, path)
    ledger = LedgerService(services.database, RelayedWriter(path, relay.address))
    try:
        held = await ledger.reserve(principal, UNITS_PER_CENT)
        with pytest.raises(PaymentRequired):
            await ledger.reserve(principal, UNITS_PER_CENT)
        assert await ledger.settle(held, usage(UNITS_PER_CENT // 4)) == UNITS_PER_CENT // 4
        assert await ledger.settle(held, usage(UNITS_PER_CENT // 4)) == 0  # settled once
    finally:
        await ledger.close()
        await relay.close()
    assert await balance_units(services, user.id) == UNITS_PER_CENT - UNITS_PER_CENT // 4


async def test_calls_settled_together_through_the_relay_each_charge_once(
    services: Services, make_user: MakeUser, tmp_path: Path
) -> None:
    path = sqlite_file(services.database)
    if path is None:
        pytest.skip("the relay serves a SQLite file store")
    user = await make_user(credit_cents=10)
    principal = await principal_for(services, user.id)
    relay = WriteRelay(tmp_path / WRITER_SOCKET, _KEY, path)
    writer = RelayedWriter(path, relay.address)
    ledger = LedgerService(services.database, writer)
    try:
        held = [await ledger.reserve(principal, UNITS_PER_CENT) for _ in range(3)]
        settled = await asyncio.gather(
            *(ledger.settle(r, usage(UNITS_PER_CENT // 4)) for r in held),
            ledger.settle(held[0], usage(UNITS_PER_CENT // 4)),
        )
        assert writer._conn is None  # nothing ran on this process's own writer (never opened)
    finally:
        await ledger.close()
        await relay.close()
    assert settled == [UNITS_PER_CENT // 4] * 3 + [0]
    assert await balance_units(services, user.id) == 10 * UNITS_PER_CENT - 3 * (UNITS_PER_CENT // 4)


def test_the_wire_carries_dataclasses_times_and_errors_exactly() -> None:
    now = datetime.now(UTC)
    reservation = Reservation("r1", "u1", None, "2026-12", 5)
    message = [(1, "m:f", (reservation, usage(3), now, now.replace(tzinfo=None), PaymentRequired("x")))]
    back = pickle.loads(_encode(message))
    (_, _, (got_reservation, got_usage, aware, naive, error)) = back[0]
    assert (got_reservation, got_usage) == (reservation, usage(3))
    assert (aware, naive) == (now, now.replace(tzinfo=None))
    assert aware.tzinfo is UTC
    assert naive.tzinfo is None
    assert (type(error), error.message) == (PaymentRequired, "x")
