"""A text runner whose engine lives in a supervised worker process: the `TextRunner` the API process
holds for an embedded engine (llama.cpp), forwarding every method to the real runner in the worker.

The registry builds it for engines in its `HOSTED` map as `HostedTextRunner(entry, target)`, where
`target` is the engine's `"module:Class"`; the worker builds that class from the same entry. Prepared
prompts travel to the worker and back unchanged (token ids), so a prompt prepared before a restart
still runs after it. Supervisor tuning comes from `engine_options.supervisor` (RestartPolicy's field
names), e.g. `{ base_delay = 0.05, crash_loop_crashes = 2 }` in tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from batchin.models.base import (
    ChatParams,
    CompletionParams,
    EngineUnavailable,
    PreparedPrompt,
    RunnerHealth,
    TextDelta,
)
from batchin.models.catalog import CatalogEntry
from batchin.models.engine_client import EngineClient
from batchin.models.engine_stats import EngineWorkerStats, rss_bytes
from batchin.models.engine_supervisor import EngineSupervisor, RestartPolicy

__all__ = ["HostedTextRunner"]

_ATTRIBUTES = ("context_length", "supports_fim", "max_concurrency")


class HostedTextRunner:
    def __init__(self, entry: CatalogEntry, target: str) -> None:
        self.entry = entry
        self.target = target
        self.context_length: int = entry.context_length or 0
        self.supports_fim = False
        self.max_concurrency = 1
        options = entry.engine_options.get("supervisor", {})
        if not isinstance(options, dict):
            raise ValueError(f"model {entry.id}: engine_options.supervisor must be a table")
        self._policy = RestartPolicy(**{str(k): float(v) for k, v in options.items()})  # type: ignore[arg-type]
        self._nice = int(str(entry.engine_options.get("nice", 10)))
        self._weights: Path | None = None
        self._supervisor: EngineSupervisor | None = None

    async def load(self, weights: Path | None) -> None:
        self._weights = weights
        supervisor = EngineSupervisor(self.entry.id, self._start_worker, self._policy)
        self._supervisor = supervisor
        await supervisor.start()

    async def _start_worker(self) -> EngineClient:
        client = await EngineClient.start(
            self.target, self.entry, self._weights, attributes=_ATTRIBUTES, nice=self._nice
        )
        self.context_length = int(client.attributes["context_length"])
        self.supports_fim = bool(client.attributes["supports_fim"])
        self.max_concurrency = int(client.attributes["max_concurrency"])
        return client

    @property
    def worker(self) -> EngineClient | None:
        """The worker serving now (None while it restarts)."""
        return None if self._supervisor is None else self._supervisor.client_now

    def worker_stats(self) -> EngineWorkerStats:
        """Restarts, state and the worker's pid and resident memory, read now (for /metrics)."""
        supervisor = self._supervisor
        if supervisor is None:
            return EngineWorkerStats(self.entry.id, pid=None, restarts=0, state="closed", rss_bytes=None)
        pid = supervisor.pid
        return EngineWorkerStats(
            self.entry.id,
            pid=pid,
            restarts=supervisor.restarts,
            state=supervisor.state,
            rss_bytes=None if pid is None else rss_bytes(pid),
        )

    async def _client(self) -> EngineClient:
        if self._supervisor is None:
            raise EngineUnavailable(f"model {self.entry.id} is not loaded")
        return await self._supervisor.client()

    async def prepare_chat(self, params: ChatParams) -> PreparedPrompt:
        prepared: PreparedPrompt = await (await self._client()).call("prepare_chat", params)
        return prepared

    async def prepare_completion(self, params: CompletionParams) -> PreparedPrompt:
        prepared: PreparedPrompt = await (await self._client()).call("prepare_completion", params)
        return prepared

    async def generate(self, prepared: PreparedPrompt) -> AsyncGenerator[TextDelta, None]:
        client = await self._client()
        # aclosing: an early close here reaches the worker now, not when the GC finds the stream.
        async with contextlib.aclosing(client.stream("generate", prepared)) as deltas:
            async for delta in deltas:
                yield delta

    def health(self) -> RunnerHealth:
        supervisor = self._supervisor
        if supervisor is None:
            return RunnerHealth(status="unavailable", reason="not loaded")
        state = supervisor.state
        if state in ("starting", "restarting"):
            return RunnerHealth(status="loading", reason=supervisor.reason)
        if state != "ready":
            return RunnerHealth(status="unavailable", reason=supervisor.reason)
        worker = supervisor.client_now
        extra: dict[str, Any] = {"loaded": True, "restarts": supervisor.restarts}
        if worker is not None:
            extra["pid"] = worker.pid
        return RunnerHealth(status=self.entry.status, extra=extra)

    async def close(self) -> None:
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            await supervisor.close()
