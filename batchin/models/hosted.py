"""The base of every runner whose engine lives in a supervised worker process: the proxies the
registry builds for embedded engines (hosted_text.py, hosted_embeddings.py, hosted_speech.py,
hosted_transcription.py, hosted_diffusers.py). The API process holds no weights: each method is
forwarded to the real runner in the worker (engine_host.py) over its pipe (engine_client.py), and
the supervisor (engine_supervisor.py) restarts a worker that dies.

A proxy names the attributes it copies from the worker's runner once that has loaded
(`ATTRIBUTES`) and forwards each method in one line, `await self._call("embed", texts)` or
`self._stream("generate", prepared)`; a new engine is one proxy module plus a line in the
registry's `HOSTED` map.

Idle unloading: with the catalog's `idle_unload_seconds`, a model with no call in flight for that
long has its worker closed (its memory freed); the next call starts one again and waits for it.

Catalog `engine_options` read here: `supervisor` (RestartPolicy's field names, e.g.
`{ base_delay = 0.05, crash_loop_crashes = 2 }` in tests) and `nice` (the worker's CPU niceness,
default 10: engines yield the CPU to the API process's event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, ClassVar

from batchin.errors import ServiceUnavailable
from batchin.models.base import EngineUnavailable, RunnerHealth
from batchin.models.catalog import CatalogEntry
from batchin.models.engine_client import EngineClient
from batchin.models.engine_relay import RelayAddress
from batchin.models.engine_stats import EngineWorkerStats, rss_bytes
from batchin.models.engine_supervisor import EngineSupervisor, RestartPolicy
from batchin.models.engine_wire import Admission

__all__ = ["HostedRunner"]

log = logging.getLogger("batchin.models")


class HostedRunner:
    # Attributes of the worker's runner copied onto the proxy after each (re)start.
    ATTRIBUTES: ClassVar[tuple[str, ...]] = ()

    def __init__(self, entry: CatalogEntry, target: str) -> None:
        self.entry = entry
        self.target = target  # the engine's "module:Class", built in the worker
        self.derived_dir: Path | None = None  # set by the registry; handed on to the worker's runner
        # Set by the registry in an API process of `serve --workers N`: attach to the engine the
        # supervising process hosts (engine_relay.py) rather than start one.
        self.relay: RelayAddress | None = None
        options = entry.engine_options.get("supervisor", {})
        if not isinstance(options, dict):
            raise ValueError(f"model {entry.id}: engine_options.supervisor must be a table")
        self._policy = RestartPolicy(**{str(k): float(v) for k, v in options.items()})  # type: ignore[arg-type]
        self._nice = int(str(entry.engine_options.get("nice", 10)))
        self._weights: Path | None = None
        self._loaded = False  # load() succeeded once: an unloaded model may start again
        self._closed = False
        self._supervisor: EngineSupervisor | None = None
        self._reloading = asyncio.Lock()
        self._in_flight = 0
        self._last_used = time.monotonic()
        self._idle_watch: asyncio.Task[None] | None = None
        self._past_restarts = 0  # restarts of supervisors closed by idle unloading
        self.unloads = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def load(self, weights: Path | None) -> None:
        self._weights = weights
        await self._start_supervisor()
        self._loaded = True

    async def _start_supervisor(self) -> EngineSupervisor:
        supervisor = EngineSupervisor(self.entry.id, self._start_worker, self._policy)
        self._supervisor = supervisor  # set first: calls arriving meanwhile wait on its start
        try:
            await supervisor.start()
        except BaseException:
            self._supervisor = None
            await supervisor.close()
            raise
        self._last_used = time.monotonic()
        idle = self.entry.idle_unload_seconds
        if idle is not None:
            watch = self._unload_when_idle(supervisor, idle)
            self._idle_watch = asyncio.get_running_loop().create_task(watch, name=f"idle-{self.entry.id}")
        return supervisor

    async def _start_worker(self) -> EngineClient:
        if self.relay is not None:  # an API process of `serve --workers`: the supervisor's engine
            client = await EngineClient.connect(self.relay, self.entry.id, attributes=self.ATTRIBUTES)
        else:
            client = await EngineClient.start(
                self.target,
                self.entry,
                self._weights,
                attributes=self.ATTRIBUTES,
                nice=self._nice,
                derived_dir=self.derived_dir,
            )
        for name, value in client.attributes.items():
            setattr(self, name, value)
        return client

    async def _unload_when_idle(self, supervisor: EngineSupervisor, idle: float) -> None:
        while True:
            due = self._last_used + idle
            now = time.monotonic()
            if self._in_flight == 0 and now >= due:
                break
            await asyncio.sleep(idle if self._in_flight else due - now)
        # No await between the check above and this: a call starting now finds no supervisor and
        # starts a fresh one.
        self._supervisor = self._idle_watch = None
        self._past_restarts += supervisor.restarts
        self.unloads += 1
        log.info("model %s unloaded after %.0fs without a call", self.entry.id, idle)
        await supervisor.close()

    async def close(self) -> None:
        self._closed = True
        watch, self._idle_watch = self._idle_watch, None
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            await supervisor.close()

    # -- forwarding --------------------------------------------------------------------------

    async def _client(self) -> EngineClient:
        supervisor = self._supervisor
        if supervisor is None:
            supervisor = await self._reload()
        return await supervisor.client()

    async def _reload(self) -> EngineSupervisor:
        """Start a worker again for a model unloaded after its idle time."""
        if self._closed or not self._loaded:
            raise ServiceUnavailable(f"model {self.entry.id} is not loaded")
        async with self._reloading:
            if self._supervisor is not None:
                return self._supervisor
            try:
                return await self._start_supervisor()
            except EngineUnavailable as exc:
                raise ServiceUnavailable(f"model {self.entry.id} is unavailable: {exc}") from exc

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self._in_flight += 1
        try:
            return await (await self._client()).call(method, *args, **kwargs)
        finally:
            self._in_flight -= 1
            self._last_used = time.monotonic()

    async def _stream(
        self, method: str, *args: Any, admission: Admission | None = None, **kwargs: Any
    ) -> AsyncGenerator[Any, None]:
        """`admission`: the call's (priority, preemptible), which a shared engine admits by."""
        self._in_flight += 1
        try:
            client = await self._client()
            stream = client.stream(method, *args, admission=admission, **kwargs)
            # aclosing: an early close here reaches the worker now, not when the GC finds the stream.
            async with contextlib.aclosing(stream) as items:
                async for item in items:
                    yield item
        finally:
            self._in_flight -= 1
            self._last_used = time.monotonic()

    # -- what the registry and /metrics read -------------------------------------------------

    @property
    def worker(self) -> EngineClient | None:
        """The worker serving now (None while it restarts, or after an idle unload)."""
        return None if self._supervisor is None else self._supervisor.client_now

    def worker_stats(self) -> EngineWorkerStats:
        """Restarts, state and the worker's pid and resident memory, read now (for /metrics)."""
        supervisor = self._supervisor
        if supervisor is None:
            state = "closed" if self._closed or not self._loaded else "unloaded"
            restarts = self._past_restarts
            return EngineWorkerStats(self.entry.id, pid=None, restarts=restarts, state=state, rss_bytes=None)
        pid = supervisor.pid
        return EngineWorkerStats(
            self.entry.id,
            pid=pid,
            restarts=self._past_restarts + supervisor.restarts,
            state=supervisor.state,
            rss_bytes=None if pid is None else rss_bytes(pid),
        )

    def _health_extra(self) -> dict[str, Any]:
        """What a proxy adds to a ready model's health (e.g. its dimensions or voices)."""
        return {}

    def health(self) -> RunnerHealth:
        supervisor = self._supervisor
        if self._closed:
            return RunnerHealth(status="unavailable", reason="closed")
        if supervisor is None:
            if self._loaded:  # unloaded after its idle time; the next call loads it again
                unloaded = {"loaded": False, "unloaded_when_idle": True}
                return RunnerHealth(status=self.entry.status, extra=unloaded)
            return RunnerHealth(status="unavailable", reason="not loaded")
        state = supervisor.state
        if state in ("starting", "restarting"):
            return RunnerHealth(status="loading", reason=supervisor.reason)
        if state != "ready":
            return RunnerHealth(status="unavailable", reason=supervisor.reason)
        extra: dict[str, Any] = {"loaded": True, "restarts": self._past_restarts + supervisor.restarts}
        worker = supervisor.client_now
        if worker is not None:
            extra["pid"] = worker.pid
        return RunnerHealth(status=self.entry.status, extra={**extra, **self._health_extra()})
