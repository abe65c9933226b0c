"""A scripted TextRunner: the engine's behaviour is set by the catalog entry's `engine_options`, so
core and HTTP tests run the real inference path without a model.

    [models.scripted.engine_options]    (or engine_options = { ... } inline)
    tokens = ["Hello", ",", " world", "!"]  # what every call generates, one delta per token
    delay = 0.002                      # seconds before each token
    fail_after = 2                     # raise ScriptedEngineError after this many tokens
    fim = true                         # supports fill-in-the-middle (suffix)
    usage = false                      # do not report usage on the last delta
    load_error = "no GPU here"         # load() raises EngineUnavailable (the model is unavailable)

Register it with `ModelRegistry(catalog, engines={"scripted": "tests.fakes.scripted_runner:ScriptedRunner"})`.
A prompt costs one token per whitespace-separated word (chat: over all messages' contents).

A test reaches the live runner with `await registry.runner(model_id)`; there it may set `gate` (an
asyncio.Event each token waits for) and read `calls`: one `ScriptedCall` per `generate()`, recording
the tokens produced and how the call ended (`completed`, `cancelled` when the consumer stopped it,
`failed`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from batchin.errors import InvalidRequest
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
from batchin.models.text_stream import check_context

DEFAULT_TOKENS = ("Hello", ",", " world", "!")


class ScriptedEngineError(RuntimeError):
    """The failure a scripted engine raises mid-generation (`fail_after`)."""


@dataclass
class ScriptedCall:
    prompt_tokens: int
    max_tokens: int
    produced: int = 0
    outcome: str | None = None  # completed | cancelled | failed, once the call has ended
    ended: asyncio.Event = field(default_factory=asyncio.Event)


def _words(text: str) -> int:
    return len(text.split())


class ScriptedRunner:
    supports_tools = False

    def __init__(self, entry: CatalogEntry) -> None:
        options = entry.engine_options
        self.entry = entry
        self.context_length = entry.context_length or 0
        self.max_concurrency = entry.max_concurrency
        self.supports_fim = bool(options.get("fim", False))
        raw_tokens = options.get("tokens", DEFAULT_TOKENS)
        self.tokens: list[str] = [str(t) for t in raw_tokens] if isinstance(raw_tokens, list | tuple) else []
        self.delay = float(str(options.get("delay", 0.0)))
        fail_after = options.get("fail_after")
        self.fail_after: int | None = None if fail_after is None else int(str(fail_after))
        self.report_usage = bool(options.get("usage", True))
        self.gate: asyncio.Event | None = None
        self.calls: list[ScriptedCall] = []
        self.loaded_with: Path | None = None
        self.closed = False

    async def load(self, weights: Path | None) -> None:
        error = self.entry.engine_options.get("load_error")
        if error:
            raise EngineUnavailable(str(error))
        self.loaded_with = weights

    async def prepare_chat(self, params: ChatParams) -> PreparedPrompt:
        tokens = sum(_words(m.content) for m in params.messages)
        check_context(tokens, params.sampling.max_tokens, self.context_length, prompt_param="messages")
        return PreparedPrompt(prompt_tokens=tokens, sampling=params.sampling)

    async def prepare_completion(self, params: CompletionParams) -> PreparedPrompt:
        if params.suffix is not None and not self.supports_fim:
            raise InvalidRequest(f"model {self.entry.id} has no fill-in-the-middle support", param="suffix")
        tokens = _words(params.prompt) + _words(params.suffix or "")
        check_context(tokens, params.sampling.max_tokens, self.context_length, prompt_param="prompt")
        return PreparedPrompt(prompt_tokens=tokens, sampling=params.sampling)

    async def generate(self, prepared: PreparedPrompt) -> AsyncIterator[TextDelta]:
        call = ScriptedCall(prepared.prompt_tokens, prepared.sampling.max_tokens)
        self.calls.append(call)
        budget = self.tokens[: prepared.sampling.max_tokens]
        try:
            for token in budget:
                if self.fail_after is not None and call.produced >= self.fail_after:
                    raise ScriptedEngineError(f"scripted failure after {call.produced} tokens")
                if self.gate is not None:
                    await self.gate.wait()
                if self.delay:
                    await asyncio.sleep(self.delay)
                call.produced += 1
                yield TextDelta(token)
            finish = "length" if len(self.tokens) > len(budget) else "stop"
            usage = Usage(prepared.prompt_tokens, call.produced) if self.report_usage else None
            yield TextDelta("", finish_reason=finish, usage=usage)
            call.outcome = "completed"
        except ScriptedEngineError:
            call.outcome = "failed"
            raise
        except (GeneratorExit, asyncio.CancelledError):
            call.outcome = "cancelled"
            raise
        finally:
            if call.outcome is None:  # closed while suspended after the last delta
                call.outcome = "cancelled"
            call.ended.set()

    def health(self) -> RunnerHealth:
        if self.closed:
            return RunnerHealth(status="unavailable", reason="closed")
        return RunnerHealth(status=self.entry.status, extra={"calls": len(self.calls)})

    async def close(self) -> None:
        self.closed = True
