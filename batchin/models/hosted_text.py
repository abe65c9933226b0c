"""The `TextRunner` the API process holds for an embedded text engine (llama.cpp): every method
forwarded to the real runner in its worker process (hosted.py).

Prepared prompts travel to the worker and back unchanged (token ids), so a prompt prepared before a
restart still runs after it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from batchin.models.base import ChatParams, CompletionParams, PreparedPrompt, TextDelta
from batchin.models.catalog import CatalogEntry
from batchin.models.engine_wire import resolve
from batchin.models.hosted import HostedRunner

__all__ = ["HostedTextRunner"]


class HostedTextRunner(HostedRunner):
    ATTRIBUTES = ("context_length", "supports_fim", "supports_tools", "max_concurrency")

    def __init__(self, entry: CatalogEntry, target: str) -> None:
        super().__init__(entry, target)
        self.context_length: int = entry.context_length or 0
        self.supports_fim = False
        # Known before the worker starts (an on_demand model lists its capabilities unloaded): the
        # engine class says it; its module imports no engine library until it loads.
        self.supports_tools = bool(getattr(resolve(target), "supports_tools", False))
        self.max_concurrency = 1

    async def prepare_chat(self, params: ChatParams) -> PreparedPrompt:
        prepared: PreparedPrompt = await self._call("prepare_chat", params)
        return prepared

    async def prepare_completion(self, params: CompletionParams) -> PreparedPrompt:
        prepared: PreparedPrompt = await self._call("prepare_completion", params)
        return prepared

    async def generate(self, prepared: PreparedPrompt) -> AsyncGenerator[TextDelta, None]:
        admission = (prepared.priority, prepared.preemptible)
        async for delta in self._stream("generate", prepared, admission=admission):
            yield delta
