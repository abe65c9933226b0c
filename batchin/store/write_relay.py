"""One group-commit writer for a SQLite file shared by the API processes of `serve --workers N`.

Two processes each committing their own group commits on one SQLite file pay twice the
transactions per call, contend for the WAL and re-read each other's pages (measured in
bench/profiles/workers_cores3.txt). So the supervisor (batchin/workers.py) owns the one writer:
`WriteRelay` serves the store's writer connection on a Unix socket (mode 0600, beside the engine relay's,
the same random key), and each API process's ledger, audit log and traces write through a
`RelayedWriter`, which sends registered writes by name and arguments (named_writes.py) and
resolves each caller's future with the writer's outcome. Writes from every process then share
the writer's transactions.

Wire (multiprocessing Connection, pickled tuples of plain data):
    API → writer   [(seq, name, args), …]   the writes queued during one event-loop turn
    writer → API   [(seq, ok, value), …]    outcomes, sent only after their transaction committed

The durability promise is the in-process writer's: a caller's future resolves only once the
transaction holding its write has committed (the writer replies after COMMIT), so a call's
settlement, usage and receipt are durable before its response completes. If the writer's process
is gone, every write waiting on it and every new one fails with ServiceUnavailable (503): the
call fails, nothing is dropped silently. A write whose reply was lost may or may not have
committed; the ledger's writes are conditional (a reservation closes once), so none is applied
twice, and a reservation left held is released by the sweep.

Operations that are not named writes (closures: the batch store's rows, guarded settlement blocks)
run on the API process's own writer, the in-process GroupCommitWriter this class extends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import selectors
import socket
import threading
from collections.abc import Callable
from itertools import count
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

from batchin.errors import ServiceUnavailable
from batchin.pipes import watch_pipe
from batchin.store.group_commit import GroupCommitWriter, Operation
from batchin.store.named_writes import Write, resolve_write
from batchin.store.relay_wire import Outcome, Sent, encode, receive, reply, sendable

__all__ = ["WRITER_SOCKET", "RelayedWriter", "WriteRelay", "WriterGone", "writer_address"]

log = logging.getLogger("batchin.store")

WRITER_SOCKET = "writer.sock"
Address = tuple[str, bytes]  # the socket's path, the key a connection must prove it holds
_MAX_BATCH = 512  # writes per transaction at most, as the in-process writer's


class WriterGone(ServiceUnavailable):
    """The process holding the store's writer cannot be reached."""


def writer_address(relay: Address) -> Address:
    """The writer's socket of a supervisor, from its engine relay's address (same folder, key)."""
    return (str(Path(relay[0]).parent / WRITER_SOCKET), relay[1])


class WriteRelay:
    """The writer's end (the supervisor), on two threads of its own rather than the supervisor's
    event loop, so that a transaction costs no asyncio future or loop wake-up:
    - the reader waits on every API process's connection and hands what arrives to the writer;
    - the writer takes everything handed over since its last transaction, runs it in one
      transaction of the store's connection, and replies to each process after COMMIT.
    The reader never waits for the writer. A writer waiting for SQLite's write lock (held by an API
    process's own transaction: a retention delete, a batch claim) must not stop the reading, or
    that process could block sending its writes while its transaction waits on its event loop."""

    def __init__(self, path: Path, key: bytes, database_file: str) -> None:
        self.address: Address = (str(path), key)
        self.database_file = database_file
        self._writer = GroupCommitWriter(database_file)  # its connection, on the writer thread only
        self._listener = Listener(self.address[0], family="AF_UNIX", authkey=key)
        os.chmod(self.address[0], 0o600)
        self._arrivals: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        self._wake_reader, self._wake_writer = socket.socketpair()
        # (connection, its message) for the writer; message None: the connection ended, close it
        # (the writer's to close, after replying to what came before). None: stop.
        self._inbox: queue.SimpleQueue[tuple[Connection, Sent | None] | None] = queue.SimpleQueue()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._accept_forever, name="write-relay-accept", daemon=True),
            threading.Thread(target=self._read_forever, name="write-relay-read", daemon=True),
            threading.Thread(target=self._write_forever, name="batchin-ledger", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _accept_forever(self) -> None:
        while not self._closed:
            try:
                conn = self._listener.accept()  # checks the key before handing the connection over
            except (OSError, AuthenticationError):  # closed, or a peer without the key
                continue
            self._arrivals.put(conn)
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")

    def _read_forever(self) -> None:
        # One epoll selector for the thread's life (multiprocessing's `wait` builds one per call).
        selector = selectors.DefaultSelector()
        selector.register(self._wake_reader, selectors.EVENT_READ)
        try:
            while not self._closed:
                for key, _ in selector.select():
                    if key.fileobj is self._wake_reader:
                        self._wake_reader.recv(4096)
                        while not self._arrivals.empty():
                            conn = self._arrivals.get()
                            selector.register(conn.fileno(), selectors.EVENT_READ, conn)
                    elif not self._read(key.data):
                        selector.unregister(key.fd)
        finally:
            for key in list(selector.get_map().values()):
                if key.data is not None:
                    self._inbox.put((key.data, None))
            selector.close()
            self._inbox.put(None)

    def _read(self, conn: Connection) -> bool:
        """The message waiting on `conn` (more come back from the selector, level-triggered); False
        when the connection ended (its process stopped or died, or sent what no one can read). What
        it sent before is still committed."""
        try:
            self._inbox.put((conn, receive(conn)))
        except Exception:
            self._inbox.put((conn, None))
            return False
        return True

    def _write_forever(self) -> None:
        try:
            while (first := self._inbox.get()) is not None:
                received = [first]
                stop = False
                while not self._inbox.empty():
                    item = self._inbox.get()
                    if item is None:
                        stop = True
                        break
                    received.append(item)
                try:
                    self._commit(received)
                except Exception:  # never leave a caller waiting for a reply that cannot come
                    log.exception("the store's writer failed; dropping the connections it served")
                    for conn, _ in received:
                        conn.close()  # its process sees the end: a 503, the outcome unknown
                if stop:
                    return
        finally:
            self._writer._close_connection()

    def _commit(self, received: list[tuple[Connection, Sent | None]]) -> None:
        replies: dict[Connection, list[Outcome]] = {}
        queued: list[tuple[Connection, int, Write]] = []
        ended: list[Connection] = []
        for conn, batch in received:
            if batch is None:
                ended.append(conn)
                continue
            replies.setdefault(conn, [])
            for seq, name, args in batch:
                try:
                    resolve_write(name)
                except LookupError as exc:
                    replies[conn].append((seq, False, exc))
                    continue
                queued.append((conn, seq, Write(name, args)))
        for start in range(0, len(queued), _MAX_BATCH):
            chunk = queued[start : start + _MAX_BATCH]
            try:
                results = self._writer.commit_now([write for _, _, write in chunk])
            except Exception as exc:  # the transaction itself failed: every write in it did
                results = [(False, exc)] * len(chunk)
            for (conn, seq, _), (ok, value) in zip(chunk, results, strict=True):
                replies[conn].append((seq, ok, value if ok else sendable(value)))
        for conn, outcomes in replies.items():  # only now, all committed: one message per process
            if outcomes and conn not in ended:
                reply(conn, outcomes)
        for conn in ended:
            conn.close()

    async def close(self) -> None:
        """Stop accepting and reading; the writer commits what was read, then closes the store's
        connection (the API processes have stopped before this)."""
        self._closed = True
        self._listener.close()
        self._wake()
        for thread in self._threads[1:]:  # not the accepting one: accept() outlives its closed socket
            await asyncio.to_thread(thread.join)
        self._wake_reader.close()
        self._wake_writer.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.address[0])


class RelayedWriter(GroupCommitWriter):
    """An API process's writer: named writes go to the supervisor's (one transaction for every
    process's writes), any other operation to this process's own (the base class)."""

    def __init__(self, database_file: str, address: Address) -> None:
        super().__init__(database_file)
        self._address = address
        self._relay: Connection | None = None
        self._outbox: list[tuple[Write, asyncio.Future[Any], Callable[[], None] | None]] = []
        self._sending = False
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._seq = count()

    def submit(
        self,
        operation: Operation,
        *,
        on_taken: Callable[[], None] | None = None,
        urgent: bool = False,
    ) -> asyncio.Future[Any]:
        if not isinstance(operation, Write):
            return super().submit(operation, on_taken=on_taken, urgent=urgent)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._outbox.append((operation, future, on_taken))
        if not self._sending:
            # One loop turn first, as the in-process writer does: the writes of tasks woken
            # together (a call's settlement and its log append) go in one message.
            self._sending = True
            loop.call_soon(self._send)
        return future

    def _send(self) -> None:
        self._sending = False
        batch, self._outbox = self._outbox, []
        message = []
        for write, future, on_taken in batch:
            if on_taken is not None:
                on_taken()
            seq = next(self._seq)
            self._waiting[seq] = future
            message.append((seq, write.name, write.args))
        try:
            relay = self._connected()
        except Exception as exc:  # no listener, or a refused handshake (AuthenticationError)
            self._lost(exc)
            return
        try:
            relay.send_bytes(encode(message))
        except (OSError, ValueError) as exc:
            self._lost(exc)
        except Exception as exc:  # an argument that does not pickle: those writes fail, unsent
            for seq, _, _ in message:
                future = self._waiting.pop(seq)
                if not future.done():
                    future.set_exception(exc)

    def _connected(self) -> Connection:
        if self._relay is None:
            # Blocking, once per connection: the handshake is two short round trips on a local socket.
            relay = Client(self._address[0], family="AF_UNIX", authkey=self._address[1])
            watch_pipe(asyncio.get_running_loop(), relay, self._on_readable)
            self._relay = relay
        return self._relay

    def _on_readable(self) -> None:
        relay = self._relay
        if relay is None:
            return
        try:
            outcomes: list[Outcome] = receive(relay)
        except (EOFError, OSError) as exc:
            self._lost(exc)
            return
        for seq, ok, value in outcomes:
            future = self._waiting.pop(seq, None)
            if future is None or future.done():
                continue  # its caller gave up (a cancelled future only drops the outcome)
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _lost(self, cause: BaseException) -> None:
        """The writer's process is gone: every write waiting on it fails (503); the next write
        connects again (to a writer that may be back)."""
        relay, self._relay = self._relay, None
        if relay is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(relay.fileno())
            relay.close()
        waiting, self._waiting = self._waiting, {}
        if waiting:
            log.warning("the store's writer is gone (%s): %d writes fail", type(cause).__name__, len(waiting))
        for future in waiting.values():
            if not future.done():
                future.set_exception(
                    WriterGone("The server's store writer is unavailable (restarting). Retry the request.")
                )

    async def close(self) -> None:
        """Send what is queued, wait for its outcomes, then close the local writer."""
        if self._outbox:
            self._send()
        if self._waiting:
            await asyncio.gather(*self._waiting.values(), return_exceptions=True)
        if self._relay is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._relay.fileno())
            self._relay.close()
            self._relay = None
        await super().close()
