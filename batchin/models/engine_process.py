"""A diffusers pipeline in its own process: its own GIL and a lower CPU priority (nice), so denoising
and encoding never stall the server's event loop, not even through the GIL (a thread did: streaming
chat TTFT doubled while a tiny image pipeline ran beside it on two cores).

    process = EngineProcess("batchin.models.images:render_images", entry, weights)
    await process.start()                      # spawns, loads the pipeline, waits for "ready"
    result = await process.call(params, progress=callback)
    await process.close()

The child runs `load_pipeline(entry, options, weights)` once, then `work(pipeline, options, params,
progress)` per call; `progress(fraction)` calls travel back as messages. One call at a time (the
pipeline is not thread-safe); the parent waits on the pipe in a worker thread. A child that dies
makes the call fail with EngineUnavailable; the parent's death closes the pipe and ends the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from batchin.models.base import EngineUnavailable
from batchin.models.catalog import CatalogEntry
from batchin.models.engine_wire import resolve

__all__ = ["EngineProcess"]

_START_TIMEOUT_SECONDS = 600.0  # loading real weights from disk can take minutes


class EngineProcess:
    def __init__(self, work: str, entry: CatalogEntry, weights: Path | None, *, nice: int = 10) -> None:
        self._work = work
        self._entry = entry
        self._weights = weights
        self._nice = nice
        self._conn: Connection | None = None
        self._process: Any = None
        self._lock = threading.Lock()
        self.pipeline_class: str | None = None

    async def start(self) -> None:
        # Not fork (unsafe with the server's threads): a fork server that imported torch and
        # diffusers once starts each engine in well under a second instead of a fresh interpreter.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(
            ["torch", "diffusers", "batchin.models.images", "batchin.models.video"]
        )
        parent, child = context.Pipe()
        entry = self._entry.model_dump(mode="json")
        weights = None if self._weights is None else str(self._weights)
        self._process = context.Process(
            target=_serve,
            args=(child, self._work, entry, weights, self._nice),
            name=f"batchin-engine-{self._entry.id}",
            daemon=True,
        )
        self._process.start()
        child.close()
        self._conn = parent
        reply = await asyncio.to_thread(self._receive, _START_TIMEOUT_SECONDS)
        if reply[0] != "ready":
            await self.close()
            raise EngineUnavailable(str(reply[1]))
        self.pipeline_class = str(reply[1])

    async def call(self, params: Any, progress: Callable[[float], None] | None = None) -> Any:
        return await asyncio.to_thread(self._round_trip, params, progress)

    def _round_trip(self, params: Any, progress: Callable[[float], None] | None) -> Any:
        with self._lock:
            if self._conn is None:
                raise EngineUnavailable("the engine process is closed")
            self._conn.send(params)
            while True:
                kind, value = self._receive(None)
                if kind == "progress":
                    if progress is not None:
                        progress(float(value))
                elif kind == "result":
                    return value
                else:
                    raise RuntimeError(str(value))

    def _receive(self, timeout: float | None) -> tuple[str, Any]:
        conn = self._conn
        if conn is None:
            raise EngineUnavailable("the engine process is closed")
        try:
            if timeout is not None and not conn.poll(timeout):
                return ("error", f"the engine process did not start within {timeout:.0f}s")
            message: tuple[str, Any] = conn.recv()
        except (EOFError, OSError):
            code = self._process.exitcode if self._process is not None else None
            raise EngineUnavailable(f"the engine process exited (code {code})") from None
        return message

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        process, self._process = self._process, None
        if conn is not None:
            with contextlib.suppress(OSError, ValueError):
                conn.send(None)
            conn.close()
        if process is not None:
            await asyncio.to_thread(process.join, 10)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join, 5)
            process.close()


def _serve(conn: Connection, work: str, entry_data: dict[str, Any], weights: str | None, nice: int) -> None:
    """The child: load once, then serve calls until the parent sends None or goes away."""
    from batchin.models.diffusers_pipeline import PipelineOptions, load_pipeline

    try:
        if nice:
            os.nice(nice)
        entry = CatalogEntry.model_validate(entry_data)
        options = PipelineOptions.of(entry)
        pipeline = load_pipeline(entry, options, None if weights is None else Path(weights))
        render = resolve(work)
    except Exception as exc:
        conn.send(
            ("error", str(exc) if isinstance(exc, EngineUnavailable) else f"{type(exc).__name__}: {exc}")
        )
        return
    conn.send(("ready", type(pipeline).__name__))
    while True:
        try:
            params = conn.recv()
        except (EOFError, OSError):
            return
        if params is None:
            return
        try:
            result = render(pipeline, options, params, lambda fraction: conn.send(("progress", fraction)))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        else:
            conn.send(("result", result))
