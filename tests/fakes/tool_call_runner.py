"""A scripted TextRunner that takes tools (`supports_tools`), so core, HTTP, MCP and batch tests run
the real tool-calling path (request → engine tool set → reply shapes) without a model.

    [models.tool-scripted]
    engine = "tool_scripted"
    engine_options = { text = "Checking.", arguments = '{"city": "Paris"}', calls = 2 }

With tools shown (any tool_choice but `none`) it writes `text` (default none), then `calls` calls
(default 1; 1 when parallel calls are off) to the function tool_choice names, else to the first
tool, each as OpenAI streams them: id and name first, then the arguments in three fragments; the
reply ends with `tool_calls`. Without tools it answers "Hello" and stops. `last_params` is the
ChatParams of the latest call, for tests of what core handed the engine.

Register it with `engines={"tool_scripted": "tests.fakes.tool_call_runner:ToolCallRunner"}`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from batchin.models.base import (
    ChatParams,
    CompletionParams,
    PreparedPrompt,
    RunnerHealth,
    TextDelta,
    ToolCallDelta,
    ToolSet,
    Usage,
)
from batchin.models.catalog import CatalogEntry
from batchin.models.text_stream import check_context

ENGINE = {"tool_scripted": "tests.fakes.tool_call_runner:ToolCallRunner"}


class ToolCallRunner:
    supports_tools = True
    supports_fim = False

    def __init__(self, entry: CatalogEntry) -> None:
        options = entry.engine_options
        self.entry = entry
        self.context_length = entry.context_length or 0
        self.max_concurrency = entry.max_concurrency
        self.text = str(options.get("text", ""))
        self.arguments = str(options.get("arguments", "{}"))
        self.calls = int(str(options.get("calls", 1)))
        self.last_params: ChatParams | None = None

    async def load(self, weights: Path | None) -> None:
        return None

    async def prepare_chat(self, params: ChatParams) -> PreparedPrompt:
        self.last_params = params
        tokens = sum(len(m.content.split()) for m in params.messages) + 1
        check_context(tokens, params.sampling.max_tokens, self.context_length, prompt_param="messages")
        return PreparedPrompt(prompt_tokens=tokens, sampling=params.sampling, payload=params.tools)

    async def prepare_completion(self, params: CompletionParams) -> PreparedPrompt:
        return PreparedPrompt(prompt_tokens=len(params.prompt.split()), sampling=params.sampling)

    async def generate(self, prepared: PreparedPrompt) -> AsyncIterator[TextDelta]:
        tools: ToolSet | None = prepared.payload
        if tools is None or tools.choice == "none":
            yield TextDelta("Hello")
            yield TextDelta("", finish_reason="stop", usage=Usage(prepared.prompt_tokens, 1))
            return
        produced = 0
        if self.text:
            produced += 1
            yield TextDelta(self.text)
        name = tools.function or tools.functions[0].name
        thirds = len(self.arguments) // 3 or 1
        fragments = [
            self.arguments[:thirds],
            self.arguments[thirds : 2 * thirds],
            self.arguments[2 * thirds :],
        ]
        for index in range(self.calls if tools.parallel else 1):
            produced += 1
            yield TextDelta("", tool_calls=(ToolCallDelta(index, id=f"call_scripted_{index}", name=name),))
            for fragment in fragments:
                produced += 1
                yield TextDelta("", tool_calls=(ToolCallDelta(index, arguments=fragment),))
        yield TextDelta("", finish_reason="tool_calls", usage=Usage(prepared.prompt_tokens, produced))

    def health(self) -> RunnerHealth:
        return RunnerHealth(status=self.entry.status)

    async def close(self) -> None:
        return None


# A catalog for tests: `tool-chat` makes two calls per reply, `tool-chat-text` writes text first;
# the scripted text models of tests/text_fixtures.py come along (they take no tools).
WEATHER_ARGUMENTS = '{"city": "Paris", "unit": "c"}'
CATALOG = f"""
[models.tool-chat]
kind = ["chat"]
engine = "tool_scripted"
licence = "MIT"
context_length = 512
status = "always_on"
engine_options = {{ arguments = '{WEATHER_ARGUMENTS}', calls = 2 }}
pricing = {{ input_per_1m = 1.5, output_per_1m = 3 }}

[models.tool-chat-text]
kind = ["chat"]
engine = "tool_scripted"
licence = "MIT"
context_length = 512
status = "always_on"
engine_options = {{ text = "Let me check.", arguments = '{WEATHER_ARGUMENTS}' }}
pricing = {{ input_per_1m = 1.5, output_per_1m = 3 }}
"""
