"""Tool calling on the real llama.cpp engine with SmolLM2 (whose template has no tools: the format
is written by us) in process: the grammar holds calls to the declared functions and their schemas,
even under hot sampling; tool_choice and parallel_tool_calls are obeyed; history renders."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest

from batchin.models.base import (
    ChatMessage,
    ChatParams,
    SamplingParams,
    TextDelta,
    ToolCall,
    ToolFunction,
    ToolSet,
)
from batchin.models.catalog import load_catalog
from batchin.models.llama_cpp import LlamaCppRunner
from batchin.models.registry import ModelRegistry
from batchin.models.tool_calls import assembled_calls

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 40},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "enum": [1, 2, 3, 4, 5, 6, 7]},  # a grammar cannot hold min/max
    },
    "required": ["city", "unit"],
}
WEATHER = ToolFunction("get_weather", "Get the weather forecast for a city", json.dumps(WEATHER_SCHEMA))
TIME = ToolFunction(
    "get_time",
    "Get the current time in a time zone",
    json.dumps({"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}),
)
ASK = (ChatMessage("user", "What's the weather in Paris this week?"),)


@pytest.fixture(scope="module")
async def runner() -> AsyncIterator[LlamaCppRunner]:
    registry = ModelRegistry(load_catalog(), hosted={})  # in process: these tests look inside
    await registry.start()
    found = await registry.text_runner(MODEL)
    assert isinstance(found, LlamaCppRunner)
    yield found
    await registry.close()


async def reply(
    runner: LlamaCppRunner, tools: ToolSet, messages: tuple[ChatMessage, ...] = ASK, **sampling: Any
) -> list[TextDelta]:
    options = {"max_tokens": 60, "temperature": 0.0, **sampling}
    prepared = await runner.prepare_chat(ChatParams(messages, SamplingParams(**options), tools=tools))
    return [delta async for delta in runner.generate(prepared)]


def calls_of(deltas: list[TextDelta]) -> list[ToolCall]:
    return assembled_calls(piece for delta in deltas for piece in delta.tool_calls)


async def test_the_default_model_takes_tools_in_our_format(runner: LlamaCppRunner) -> None:
    assert runner.supports_tools
    assert runner._native_tools is False  # SmolLM2's ChatML template shows no tools


async def test_required_gives_a_call_whose_arguments_match_the_schema(runner: LlamaCppRunner) -> None:
    deltas = await reply(runner, ToolSet((WEATHER, TIME), choice="required"))
    calls = calls_of(deltas)
    assert calls
    for call in calls:
        assert call.name in ("get_weather", "get_time")
        schema = WEATHER_SCHEMA if call.name == "get_weather" else json.loads(TIME.parameters)
        jsonschema.validate(json.loads(call.arguments), schema)
        assert call.id.startswith("call_")
    assert "".join(d.text for d in deltas) == ""
    last = deltas[-1]
    assert last.finish_reason in ("tool_calls", "length")
    assert last.usage is not None
    assert last.usage.completion_tokens <= 60


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_grammar_holds_under_hot_sampling(runner: LlamaCppRunner, seed: int) -> None:
    tools = ToolSet((WEATHER,), choice="required", parallel=False)
    deltas = await reply(runner, tools, temperature=2.0, seed=seed)
    [call] = calls_of(deltas)
    jsonschema.validate(json.loads(call.arguments), WEATHER_SCHEMA)
    assert deltas[-1].finish_reason == "tool_calls"


async def test_a_named_function_without_parallel_calls_is_one_call_to_it(runner: LlamaCppRunner) -> None:
    deltas = await reply(
        runner, ToolSet((WEATHER, TIME), choice="required", function="get_time", parallel=False)
    )
    [call] = calls_of(deltas)
    assert call.name == "get_time"
    assert set(json.loads(call.arguments)) == {"zone"}
    assert deltas[-1].finish_reason == "tool_calls"


async def test_auto_lets_the_model_answer_or_call_validly(runner: LlamaCppRunner) -> None:
    deltas = await reply(runner, ToolSet((WEATHER,)))
    text, calls = "".join(d.text for d in deltas), calls_of(deltas)
    assert text or calls
    for call in calls:
        jsonschema.validate(json.loads(call.arguments), WEATHER_SCHEMA)
    assert deltas[-1].finish_reason in (("tool_calls", "length") if calls else ("stop", "length"))


async def test_a_tool_round_trip_renders_and_the_model_answers(runner: LlamaCppRunner) -> None:
    history = (
        *ASK,
        ChatMessage(
            "assistant",
            "",
            tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris", "unit": "celsius"}'),),
        ),
        ChatMessage("tool", '{"forecast": "sunny all week", "high_c": 24}', tool_call_id="call_1"),
    )
    deltas = await reply(runner, ToolSet((WEATHER,), choice="none"), history)
    assert "".join(d.text for d in deltas).strip()
    assert calls_of(deltas) == []
    assert deltas[-1].finish_reason in ("stop", "length")


async def test_a_cached_grammar_is_reused_per_tool_set(runner: LlamaCppRunner) -> None:
    from batchin.models.tool_grammar import tool_call_grammar

    tools = ToolSet((WEATHER,), choice="required", parallel=False)
    before = tool_call_grammar.cache_info().hits
    await runner.prepare_chat(ChatParams(ASK, SamplingParams(max_tokens=8), tools=tools))
    await runner.prepare_chat(ChatParams(ASK, SamplingParams(max_tokens=8), tools=tools))
    assert tool_call_grammar.cache_info().hits >= before + 1
