"""The remote runner passes tool calling through: tools, tool_choice, parallel_tool_calls and the
conversation's calls and results go to the upstream as the caller sent them, and the upstream's
calls (streamed or whole) come back as tool-call pieces."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

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
from batchin.models.remote import RemoteConfig, RemoteRunner
from batchin.models.tool_calls import assembled_calls
from tests.fakes.tool_upstream import ToolUpstream, start_tool_upstream

ARGUMENTS = '{"city": "Paris"}'
PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}}
WEATHER = ToolFunction("get_weather", "Current weather", json.dumps(PARAMETERS), strict=True)
TIME = ToolFunction("get_time")
HISTORY = (
    ChatMessage("user", "Weather in Paris?"),
    ChatMessage("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", ARGUMENTS),)),
    ChatMessage("tool", "Sunny", tool_call_id="call_1"),
)


@pytest.fixture
def upstream() -> Iterator[ToolUpstream]:
    started = start_tool_upstream(arguments=ARGUMENTS)
    yield started
    started.stop()


@pytest.fixture
async def runner(upstream: ToolUpstream) -> AsyncIterator[RemoteRunner]:
    config = RemoteConfig(
        model_id="remote-tools",
        base_urls=(upstream.url,),
        upstream_model="up",
        context_length=4096,
        health_check_interval=0,
    )
    built = RemoteRunner(config)
    yield built
    await built.close()


async def reply(runner: RemoteRunner, tools: ToolSet | None, *, stream: bool) -> list[TextDelta]:
    params = ChatParams(HISTORY, SamplingParams(max_tokens=32), stream=stream, tools=tools)
    return [delta async for delta in runner.generate(await runner.prepare_chat(params))]


async def test_the_request_carries_tools_and_the_conversation_as_sent(
    runner: RemoteRunner, upstream: ToolUpstream
) -> None:
    assert runner.supports_tools
    tools = ToolSet((WEATHER, TIME), choice="required", function="get_time", parallel=False)
    await reply(runner, tools, stream=True)
    body = upstream.bodies[-1]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather",
                "parameters": PARAMETERS,
                "strict": True,
            },
        },
        {
            "type": "function",
            "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
        },
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    assert body["parallel_tool_calls"] is False
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ARGUMENTS},
                }
            ],
        },
        {"role": "tool", "content": "Sunny", "tool_call_id": "call_1"},
    ]


@pytest.mark.parametrize("stream", [True, False])
async def test_the_upstreams_calls_come_back_as_pieces(runner: RemoteRunner, stream: bool) -> None:
    deltas = await reply(runner, ToolSet((WEATHER,)), stream=stream)
    [call] = assembled_calls(piece for delta in deltas for piece in delta.tool_calls)
    assert call == ToolCall("call_up_0", "get_weather", ARGUMENTS)
    assert deltas[-1].finish_reason == "tool_calls"
    assert deltas[-1].usage is not None
    assert deltas[-1].usage.completion_tokens == 7


async def test_tool_choice_none_is_passed_on(runner: RemoteRunner, upstream: ToolUpstream) -> None:
    deltas = await reply(runner, ToolSet((WEATHER,), choice="none"), stream=True)
    assert upstream.bodies[-1]["tool_choice"] == "none"
    assert "".join(d.text for d in deltas) == "plain"
    assert not any(d.tool_calls for d in deltas)


async def test_without_tools_the_request_has_none(runner: RemoteRunner, upstream: ToolUpstream) -> None:
    await reply(runner, None, stream=False)
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(upstream.bodies[-1])
