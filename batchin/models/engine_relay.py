"""One set of engines for every API process of `batchin serve --workers N`.

The supervising process (batchin/workers.py) owns the model registry: it starts the engine
workers once and serves them on a Unix socket with the engine wire protocol (engine_wire.py). An
API process's hosted proxy (hosted.py) then attaches to that socket instead of spawning a worker of
its own, so N API processes share one copy of each model's weights.

Each connection opens with `("attach", name, attributes)`: `name` is a model id. The relay
answers `("ready", …)` with the attributes read from the supervisor's runner (plus `pid`, its
engine worker's), then serves calls and streams exactly as an engine worker does, forwarding each
to the supervisor's proxy: its
restarts, idle unloading and in-flight accounting stay in one place. A relay connection that drops
(the supervisor is gone) looks like an engine's death to the API process: calls in flight fail with
EngineLost (a 503 that bills nothing) and the proxy's own supervisor attaches again.

Priorities across API processes: each API process admits its own calls (core/serving/admission.py),
but its batch dispatcher and those of the others all send their fill generations here. So a
stream that carries its admission class (engine_wire.py) takes a slot of the model's gate here too:
one AdmissionPool per model (batchin/admission_pool.py, the same queue as the API processes'), as
wide as the engine's `max_concurrency`. A waiting call of higher priority takes the slot of a
running preemptible fill call from any connection: its forwarding task is cancelled (the engine
stops it at its next token, or mid-prefill) and its API process gets `Preempted`, which re-queues
a batch task without using a retry, as when its own process preempts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

from batchin.admission_pool import AdmissionPool, Priority, was_preempted
from batchin.errors import Preempted
from batchin.models.engine_host import EngineHost
from batchin.models.engine_wire import Admission, WireError

__all__ = ["EngineRelay", "RelayAddress", "attach"]

log = logging.getLogger("batchin.models")

RelayAddress = tuple[str, bytes]  # the socket's path, the key a connection must prove it holds


# The gate's queue is not the bound: each API process bounds its own queues before sending here.
_UNBOUNDED = 1 << 30


class _ForwardingHost(EngineHost):
    """Serves one API process's connection, forwarding to the supervisor's proxy for the model;
    a stream with an admission class waits for a slot of the model's gate first."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self.gate: AdmissionPool | None = None  # the model's, shared by every connection to it

    async def _stream(
        self,
        call_id: int,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        admission: Admission | None = None,
    ) -> None:
        if admission is None or self.gate is None:
            await super()._stream(call_id, method, args, kwargs)
            return
        priority, preemptible = admission
        try:
            async with self.gate.slot(Priority(priority), preemptible=preemptible):
                await super()._stream(call_id, method, args, kwargs)
        except asyncio.CancelledError:
            if not was_preempted(asyncio.current_task()):
                raise  # the API process cancelled it, or the relay closes
            # Its slot was taken (the forwarded stream is closed: the engine stops it). The task
            # ends here, cancelled by its own gate; the API process re-queues a batch task.
            self._send(("error", call_id, WireError.of(Preempted())))

    def _invoke(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Awaitable[Any]:
        return self._runner._call(method, *args, **kwargs)  # type: ignore[no-any-return]

    def _iterate(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> AsyncGenerator[Any, None]:
        return self._runner._stream(method, *args, **kwargs)  # type: ignore[no-any-return]


class EngineRelay:
    """The supervisor's end: accepts API processes' connections and serves them the registry's
    hosted runners (resolved by `runner_for`)."""

    def __init__(self, path: Path, runner_for: Callable[[str], Awaitable[Any]]) -> None:
        self.address: RelayAddress = (str(path), os.urandom(32))
        self._runner_for = runner_for
        self._listener = Listener(self.address[0], family="AF_UNIX", authkey=self.address[1])
        os.chmod(self.address[0], 0o600)
        self._loop = asyncio.get_running_loop()
        self._hosts: set[asyncio.Task[None]] = set()
        self._gates: dict[str, AdmissionPool] = {}  # per model, across connections
        self._closed = False
        self._thread = threading.Thread(target=self._accept_forever, name="engine-relay", daemon=True)
        self._thread.start()

    def _accept_forever(self) -> None:
        while not self._closed:
            try:
                conn = self._listener.accept()  # checks the key before handing the connection over
            except (OSError, AuthenticationError):  # closed, or a peer without the key: refuse it,
                continue  # and keep accepting (an uncaught refusal ended this thread)
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._start_host, conn)

    def _start_host(self, conn: Connection) -> None:
        task = self._loop.create_task(self._serve(conn), name="engine-relay-connection")
        self._hosts.add(task)
        task.add_done_callback(self._hosts.discard)

    async def _serve(self, conn: Connection) -> None:
        host = _ForwardingHost(conn)
        try:
            kind, name, attributes = await asyncio.to_thread(conn.recv)
            if kind != "attach":
                raise ValueError(f"expected attach, got {kind!r}")
            target = await self._runner_for(name)
            host.gate = self._gate(name, target)
            ready = {attribute: getattr(target, attribute) for attribute in attributes}
            worker = getattr(target, "worker", None)
            ready["pid"] = None if worker is None else worker.pid
            await host.serve(target, ready)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            with contextlib.suppress(Exception):
                host.sender.send(("failed", WireError.of(exc)))
        finally:
            await asyncio.to_thread(host.sender.close)
            conn.close()

    def _gate(self, name: str, target: Any) -> AdmissionPool:
        gate = self._gates.get(name)
        if gate is None:
            width = max(1, int(getattr(target, "max_concurrency", 1)))
            gate = self._gates[name] = AdmissionPool(f"engine:{name}", width, _UNBOUNDED)
        return gate

    async def close(self) -> None:
        self._closed = True
        self._listener.close()
        hosts = list(self._hosts)
        for task in hosts:
            task.cancel()
        await asyncio.gather(*hosts, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.address[0])


class RelayPeer:
    """Stands where EngineClient keeps the worker's process: the engine lives in the supervisor's
    tree, so there is nothing here to join or kill; the pid is the engine worker's."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid or 0
        self.exitcode: int | None = 0

    def join(self, timeout: float | None = None) -> None:
        return None

    def kill(self) -> None:
        return None

    def close(self) -> None:
        return None


def attach(address: RelayAddress, name: str, attributes: tuple[str, ...]) -> Connection:
    """Connect to the relay (blocking: run it in a thread) and ask for `name`."""
    conn = Client(address[0], family="AF_UNIX", authkey=address[1])
    conn.send(("attach", name, attributes))
    return conn
