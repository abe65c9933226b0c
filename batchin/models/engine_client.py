"""The API process's end of one engine worker (engine_host.py): spawns it, forwards calls and
streams, and notices its death.

The pipe is read by the event loop itself (`add_reader` on its file descriptor), so a token costs
one wake-up and one unpickle, no thread hand-off. A worker that dies (SIGSEGV, the OOM killer) shows
up as end-of-file: every call in flight fails with `EngineLost` (a 503 that bills nothing) and
`exited` resolves with how it ended, for the supervisor.

    client = await EngineClient.start(target, entry, weights, attributes=("context_length",))
    value = await client.call("prepare_chat", params)
    async for delta in client.stream("generate", prepared): ...
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import signal
from collections.abc import AsyncGenerator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from batchin.errors import WorkLost
from batchin.models.catalog import CatalogEntry
from batchin.models.engine_host import host_main
from batchin.models.engine_relay import RelayAddress, RelayPeer, attach
from batchin.models.engine_wire import Admission, PipeSender, WireError
from batchin.pipes import watch_pipe

__all__ = ["EngineClient", "EngineLost", "EngineStartFailed"]

_LOST = object()


class EngineLost(WorkLost):
    """The engine's worker process died during the call: a 503, nothing billed or logged."""


class EngineStartFailed(Exception):
    """The worker did not come up. `crashed`: it died (a native fault, worth retrying) rather than
    reporting a Python error from building or loading the runner (`error` then says which)."""

    def __init__(self, reason: str, *, crashed: bool, error: WireError | None = None) -> None:
        super().__init__(reason)
        self.crashed = crashed
        self.error = error


class EngineClient:
    def __init__(self, name: str, conn: Connection, process: Any) -> None:
        self._name = name  # the model's id (or, on a relay, the shared object's name)
        self._conn = conn
        self._sender = PipeSender(conn, f"engine-send-{name}")
        self._process = process
        self.pid = int(process.pid)  # kept: the process object is closed once reaped
        self._ids = itertools.count(1)
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._streams: dict[int, asyncio.Queue[tuple[str, Any]]] = {}
        # Calls cancelled here that the worker has not yet reported stopped: its engine still works on them.
        self._stopping: set[int] = set()
        self._loop = asyncio.get_running_loop()
        self._ready: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self.exited: asyncio.Future[str] = self._loop.create_future()
        self.attributes: dict[str, Any] = {}
        self.items_received = 0  # stream items, for tests and metrics
        self.calls_stopped = 0  # cancelled calls and streams the worker reported stopped

    @classmethod
    async def start(
        cls,
        target: str,
        entry: CatalogEntry,
        weights: Path | None,
        *,
        attributes: tuple[str, ...] = (),
        nice: int = 10,
        derived_dir: Path | None = None,
        load_timeout: float = 600.0,
    ) -> EngineClient:
        """Spawn a worker hosting `target` and wait until its runner has loaded."""
        # spawn, not fork: fork is unsafe beside the server's threads.
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(
            target=host_main,
            args=(
                child,
                target,
                entry.model_dump(mode="json"),
                None if weights is None else str(weights),
                attributes,
                nice,
                None if derived_dir is None else str(derived_dir),
            ),
            name=f"batchin-engine-{entry.id}",
            daemon=True,
        )
        await asyncio.to_thread(process.start)
        child.close()  # the worker's death must close the pipe's last write end
        client = cls(entry.id, parent, process)
        watch_pipe(client._loop, parent, client._on_readable)
        try:
            client.attributes = await asyncio.wait_for(asyncio.shield(client._ready), load_timeout)
        except BaseException:
            await client.close()
            raise
        return client

    @classmethod
    async def connect(
        cls, relay: RelayAddress, name: str, *, attributes: tuple[str, ...] = (), load_timeout: float = 600.0
    ) -> EngineClient:
        """Attach to the engine the supervising process of `serve --workers` hosts for model `name`
        (engine_relay.py) instead of spawning one: every API process shares its weights."""
        conn = await asyncio.to_thread(attach, relay, name, attributes)
        client = cls(name, conn, RelayPeer(None))
        watch_pipe(client._loop, conn, client._on_readable)
        try:
            ready = await asyncio.wait_for(asyncio.shield(client._ready), load_timeout)
        except BaseException:
            await client.close()
            raise
        client.pid = int(ready.pop("pid", None) or 0)
        client.attributes = ready
        return client

    @property
    def alive(self) -> bool:
        return not self.exited.done()

    @property
    def in_flight(self) -> int:
        """Calls and streams sent to the worker and not yet answered, or cancelled and not yet
        reported stopped by it."""
        return len(self._calls) + len(self._streams) + len(self._stopping)

    # -- calls -------------------------------------------------------------------------------

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        call_id = next(self._ids)
        future: asyncio.Future[Any] = self._loop.create_future()
        self._calls[call_id] = future
        try:
            self._send(("call", call_id, method, args, kwargs))
            return await future
        except asyncio.CancelledError:
            # The caller is gone (cancelling the task cancelled `future` too): unless the worker has
            # answered meanwhile, it stops the call's work at its next stop point.
            if self._calls.pop(call_id, None) is not None:
                self._cancel(call_id)
            raise
        finally:
            self._calls.pop(call_id, None)

    async def stream(
        self, method: str, *args: Any, admission: Admission | None = None, **kwargs: Any
    ) -> AsyncGenerator[Any, None]:
        """`admission`: the call's (priority, preemptible), for a shared engine (engine_wire.py)."""
        call_id = next(self._ids)
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._streams[call_id] = queue
        finished = False
        try:
            self._send(("stream", call_id, method, args, kwargs, admission))
            while True:
                kind, value = await queue.get()
                if kind == "item":
                    yield value
                    continue
                finished = True
                if kind == "end":
                    return
                raise value
        finally:
            self._streams.pop(call_id, None)
            if not finished:  # closed early (client gone): the worker stops at its next token
                self._cancel(call_id)

    def _cancel(self, call_id: int) -> None:
        if self.alive:
            self._stopping.add(call_id)
            self._send_quietly(("cancel", call_id))

    def _send(self, message: tuple[Any, ...]) -> None:
        if not self.alive:
            raise self._lost_error()
        try:
            self._sender.send(message)
        except OSError:
            raise self._lost_error() from None

    def _send_quietly(self, message: tuple[Any, ...] | None) -> None:
        with contextlib.suppress(BaseException):
            if self.alive:
                self._sender.send(message)

    # -- the pipe ----------------------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            while self._conn.poll():
                self._dispatch(self._conn.recv())
        except (EOFError, OSError):
            self._loop.remove_reader(self._conn.fileno())
            if not self.exited.done():
                self._loop.create_task(self._reap(), name=f"reap-engine-{self._name}")

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "item":
            queue = self._streams.get(message[1])
            if queue is not None:
                self.items_received += 1
                queue.put_nowait(("item", message[2]))
        elif kind == "result":
            future = self._calls.get(message[1])
            if future is not None and not future.done():
                future.set_result(message[2])
        elif kind in ("end", "error"):
            error = message[2].exception() if kind == "error" else None
            queue = self._streams.get(message[1])
            if queue is not None:
                queue.put_nowait((kind, error))
            future = self._calls.get(message[1])
            if future is not None and not future.done() and error is not None:
                future.set_exception(error)
        elif kind == "stopped":
            if message[1] in self._stopping:
                self._stopping.discard(message[1])
                self.calls_stopped += 1
        elif kind == "ready":
            if not self._ready.done():
                self._ready.set_result(message[1])
        elif kind == "failed" and not self._ready.done():
            failure: WireError = message[1]
            self._ready.set_exception(EngineStartFailed(failure.message, crashed=False, error=failure))

    async def _reap(self) -> None:
        """The pipe closed: learn how the worker ended, then fail everything in flight."""
        await asyncio.to_thread(self._process.join, 10)
        how = describe_exit(self._process.exitcode)
        if not self._ready.done():
            self._ready.set_exception(EngineStartFailed(f"engine process {how} while loading", crashed=True))
        self.exited.set_result(how)
        self._stopping.clear()
        error = self._lost_error()
        for future in self._calls.values():
            if not future.done():
                future.set_exception(error)
        for queue in self._streams.values():
            queue.put_nowait(("error", error))

    def _lost_error(self) -> EngineLost:
        how = self.exited.result() if self.exited.done() else "is gone"
        return EngineLost(f"model {self._name}'s engine process {how}; it is restarting, retry shortly")

    async def close(self) -> None:
        """Ask the worker to close its runner and exit; kill it if it does not in time."""
        if self.alive:
            self._send_quietly(None)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.exited), 15)
            if not self.exited.done():
                self._process.kill()
                await asyncio.shield(self.exited)
        else:
            await asyncio.to_thread(self._process.join, 10)
        if self._ready.done() and not self._ready.cancelled():
            self._ready.exception()  # retrieved: a start that timed out must not log it as lost
        await asyncio.to_thread(self._sender.close)
        self._conn.close()
        self._process.close()


def describe_exit(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"
