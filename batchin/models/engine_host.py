"""The engine worker process: hosts one runner, built from its catalog entry by the registry's
`"module:Class"` name, and serves its methods over the pipe (protocol in engine_wire.py).

The worker runs its own event loop, so the runner is exactly the in-process one (its decode thread,
its hand-off, its semaphore); calls run as tasks, several at once, and the runner serialises what it
must. A `cancel` cancels the call's task, which closes the runner's generator (the runner stops
decoding at its next token) or cancels its awaited engine work (stoppable.py: the engine's thread
stops at its next stop point), as when an in-process client goes away. Once the task has ended,
`("stopped", id)` tells the API process that the engine is free of it.

The worker exits when the API process asks (None), or when the pipe closes (the API process died),
so an orphan never keeps weights in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncGenerator, Awaitable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from batchin.models.catalog import CatalogEntry
from batchin.models.engine_wire import Admission, PipeSender, WireError, resolve
from batchin.pipes import watch_pipe

__all__ = ["EngineHost", "host_main"]


def host_main(
    conn: Connection,
    target: str,
    entry_data: dict[str, Any],
    weights: str | None,
    attributes: tuple[str, ...],
    nice: int,
    derived_dir: str | None = None,
) -> None:
    """The worker's entry point (a spawned process). `derived_dir`: the folder the registry gave
    the proxy for files derived from weights, handed on to a runner that writes them."""
    # Ctrl-C reaches the whole process group; the API process decides when its engines stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if nice:
        os.nice(nice)  # decoding yields the CPU to the API process's event loop
    host = EngineHost(conn)
    entry = CatalogEntry.model_validate(entry_data)
    asyncio.run(host.run(target, entry, weights, attributes, derived_dir))
    host.sender.close()  # what is still queued (a last large reply) goes out first
    conn.close()


class EngineHost:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.sender = PipeSender(conn, "engine-host-send")
        self._runner: Any = None
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._done: asyncio.Future[None] | None = None

    async def run(
        self,
        target: str,
        entry: CatalogEntry,
        weights: str | None,
        attributes: tuple[str, ...],
        derived_dir: str | None,
    ) -> None:
        try:
            runner_class = resolve(target)
            build = getattr(runner_class, "from_entry", runner_class)
            runner = build(entry)
            if derived_dir is not None and hasattr(runner, "derived_dir"):
                runner.derived_dir = Path(derived_dir)
            if hasattr(runner, "load"):
                await runner.load(None if weights is None else Path(weights))
        except Exception as exc:
            self._send(("failed", WireError.of(exc)))
            return
        try:
            await self.serve(runner, {name: getattr(runner, name) for name in attributes})
        finally:
            await runner.close()

    async def serve(self, runner: Any, ready: dict[str, Any]) -> None:
        """Say `ready`, then serve `runner`'s methods on the connection until it closes (or asks
        to). What is still running for it is cancelled; the runner itself is left open."""
        self._runner = runner
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._send(("ready", ready))
        watch_pipe(loop, self._conn, self._on_readable)
        try:
            await self._done
        finally:
            loop.remove_reader(self._conn.fileno())
            tasks = list(self._tasks.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _on_readable(self) -> None:
        try:
            while self._conn.poll():
                message = self._conn.recv()
                if message is None:
                    self._finish()
                    return
                self._dispatch(message)
        except (EOFError, OSError):  # the API process is gone
            self._finish()

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind, call_id = message[0], message[1]
        if kind == "cancel":
            task = self._tasks.get(call_id)
            if task is None or task.done():  # it ended as the cancel crossed the pipe
                self._send(("stopped", call_id))
            else:
                task.add_done_callback(lambda _: self._send(("stopped", call_id)))
                task.cancel()
            return
        method, args, kwargs = message[2], message[3], message[4]
        if kind == "call":
            work = self._call(call_id, method, args, kwargs)
        else:
            work = self._stream(call_id, method, args, kwargs, message[5])
        task = asyncio.get_running_loop().create_task(work)
        self._tasks[call_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(call_id, None))

    async def _call(self, call_id: int, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            result = await self._invoke(method, args, kwargs)
        except Exception as exc:
            self._send(("error", call_id, WireError.of(exc)))
        else:
            self._send_or_fail(call_id, ("result", call_id, result))

    async def _stream(
        self,
        call_id: int,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        admission: Admission | None = None,
    ) -> None:
        """`admission` is for a host that shares its engine (engine_relay.py); a worker serves its
        one API process's calls in the order they come."""
        try:
            async with contextlib.aclosing(self._iterate(method, args, kwargs)) as items:
                async for item in items:
                    if not self._send_or_fail(call_id, ("item", call_id, item)):
                        return
        except Exception as exc:
            self._send(("error", call_id, WireError.of(exc)))
        else:
            self._send(("end", call_id))

    def _invoke(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Awaitable[Any]:
        return getattr(self._runner, method)(*args, **kwargs)  # type: ignore[no-any-return]

    def _iterate(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> AsyncGenerator[Any, None]:
        return getattr(self._runner, method)(*args, **kwargs)  # type: ignore[no-any-return]

    def _send_or_fail(self, call_id: int, message: tuple[Any, ...]) -> bool:
        """Send; a value that cannot be pickled fails its call instead of the worker."""
        try:
            self._send(message)
        except Exception as exc:
            self._send(("error", call_id, WireError.of(exc)))
            return False
        return True

    def _send(self, message: tuple[Any, ...]) -> None:
        try:
            self.sender.send(message)
        except OSError:  # the API process is gone
            self._finish()

    def _finish(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(None)
