"""Test doubles for the registry: an engine whose load the test controls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path

from batchin.models.base import (
    ChatParams,
    CompletionParams,
    EngineUnavailable,
    PreparedPrompt,
    RunnerHealth,
    TextDelta,
    Usage,
)
from batchin.models.catalog import CatalogEntry

# Per model id: an Event the test sets to let that model's load finish (absent: load at once).
LOAD_GATES: dict[str, asyncio.Event] = {}
LOADS: list[str] = []


class NoLoadRunner:
    """A runner without `load()` (as a remote upstream may be)."""

    supports_tools = False

    def __init__(self, entry: CatalogEntry) -> None:
        self.entry = entry
        self.context_length = entry.context_length or 0
        self.supports_fim = False
        self.max_concurrency = 1
        self.weights: Path | None = None
        self.closed = False

    async def prepare_chat(self, params: ChatParams) -> PreparedPrompt:
        return PreparedPrompt(prompt_tokens=len(params.messages), sampling=params.sampling)

    async def prepare_completion(self, params: CompletionParams) -> PreparedPrompt:
        return PreparedPrompt(prompt_tokens=1, sampling=params.sampling)

    async def generate(self, prepared: PreparedPrompt) -> AsyncGenerator[TextDelta, None]:
        yield TextDelta("ok", finish_reason="stop", usage=Usage(prepared.prompt_tokens, 1))

    def health(self) -> RunnerHealth:
        return RunnerHealth(status=self.entry.status, extra={"weights": str(self.weights)})

    async def close(self) -> None:
        self.closed = True


class FakeRunner(NoLoadRunner):
    async def load(self, weights: Path | None) -> None:
        LOADS.append(self.entry.id)
        if self.entry.engine_options.get("fail") == "engine":
            raise EngineUnavailable("no CUDA GPU here")
        if self.entry.engine_options.get("fail") == "crash":
            raise RuntimeError("boom")
        gate = LOAD_GATES.get(self.entry.id)
        if gate is not None:
            await gate.wait()
        self.weights = weights


class FactoryRunner(NoLoadRunner):
    """Built through `from_entry` (as the remote runner is), never called with the entry directly."""

    def __init__(self, entry: CatalogEntry, *, built_by_factory: bool = False) -> None:
        if not built_by_factory:
            raise TypeError("use from_entry")
        super().__init__(entry)

    @classmethod
    def from_entry(cls, entry: CatalogEntry) -> FactoryRunner:
        return cls(entry, built_by_factory=True)
