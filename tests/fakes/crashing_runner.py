"""A text engine whose `load` dies the way a native fault does (SIGSEGV), for the supervisor tests.

`engine_options.crashes` > 0: only that many loads crash, counted in `engine_options.count_file`
(loads happen in fresh worker processes, so the count lives on disk); after them it serves
"ok" to every prompt, so a crash-looping model can be seen recovering on its own."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncGenerator
from pathlib import Path

from batchin.models.base import ChatParams, CompletionParams, PreparedPrompt, RunnerHealth, TextDelta, Usage
from batchin.models.catalog import CatalogEntry


class CrashingRunner:
    supports_tools = False

    def __init__(self, entry: CatalogEntry) -> None:
        self.entry = entry
        self.context_length = entry.context_length or 64
        self.supports_fim = False
        self.max_concurrency = 1

    async def load(self, weights: Path | None) -> None:
        options = self.entry.engine_options
        crashes = int(str(options.get("crashes", -1)))
        if crashes >= 0:
            counter = Path(str(options["count_file"]))
            done = int(counter.read_text()) if counter.exists() else 0
            if done >= crashes:
                return
            counter.write_text(str(done + 1))
        os.kill(os.getpid(), signal.SIGSEGV)

    async def prepare_chat(self, params: ChatParams) -> PreparedPrompt:
        return PreparedPrompt(prompt_tokens=1, sampling=params.sampling)

    async def prepare_completion(self, params: CompletionParams) -> PreparedPrompt:
        return PreparedPrompt(prompt_tokens=1, sampling=params.sampling)

    async def generate(self, prepared: PreparedPrompt) -> AsyncGenerator[TextDelta, None]:
        yield TextDelta("ok", finish_reason="stop", usage=Usage(prepared.prompt_tokens, 1))

    def health(self) -> RunnerHealth:
        return RunnerHealth(status=self.entry.status)

    async def close(self) -> None:
        pass
