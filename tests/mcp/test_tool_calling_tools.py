"""The MCP `chat` and `respond` tools take `tools` and `tool_choice` like the HTTP API and return the
calls the model made in their structured content; a batch task may carry tools too. On a scripted
engine that takes tools (tests/fakes/tool_call_runner.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from batchin.config import Settings
from batchin.services import Services
from tests.batch_fixtures import FAST, submit, wait_for
from tests.conftest import MakeUser
from tests.fakes.tool_call_runner import CATALOG, ENGINE, WEATHER_ARGUMENTS
from tests.mcp.conftest import McpClientFactory
from tests.text_fixtures import CATALOG as SCRIPTED_CATALOG
from tests.text_fixtures import SCRIPTED_ENGINES, scripted_services

WEATHER_FUNCTION = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ASK = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    engines = {**SCRIPTED_ENGINES, **ENGINE}
    async with scripted_services(
        settings, catalog=SCRIPTED_CATALOG + CATALOG, engines=engines, **FAST
    ) as built:
        await built.batches.start()
        try:
            yield built
        finally:
            await built.batches.stop()


async def test_chat_tool_returns_the_calls(mcp_client: McpClientFactory, make_user: MakeUser) -> None:
    user = await make_user()
    tools = [{"type": "function", "function": WEATHER_FUNCTION}]
    async with mcp_client(user.api_key) as client:
        listed = {tool.name: tool for tool in await client.list_tools()}
        result = await client.call_tool(
            "chat",
            {
                "model": "tool-chat",
                "messages": ASK,
                "tools": tools,
                "tool_choice": "required",
                "parallel_tool_calls": False,
            },
        )
    assert {"tools", "tool_choice", "parallel_tool_calls"} <= set(listed["chat"].input_schema["properties"])
    assert not result.is_error
    body = result.structured_content
    assert body is not None
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": WEATHER_ARGUMENTS}


async def test_chat_tool_takes_a_tool_round_trip(mcp_client: McpClientFactory, make_user: MakeUser) -> None:
    user = await make_user()
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    messages = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
    ]
    async with mcp_client(user.api_key) as client:
        result = await client.call_tool(
            "chat",
            {
                "model": "tool-chat",
                "messages": messages,
                "tools": [{"type": "function", "function": WEATHER_FUNCTION}],
                "tool_choice": "none",
            },
        )
    assert not result.is_error, result.content
    assert result.structured_content is not None
    assert result.structured_content["choices"][0]["message"]["content"] == "Hello"


async def test_respond_tool_returns_function_call_items(
    mcp_client: McpClientFactory, make_user: MakeUser
) -> None:
    user = await make_user()
    async with mcp_client(user.api_key) as client:
        result = await client.call_tool(
            "respond",
            {
                "model": "tool-chat-text",
                "input": "Weather in Paris?",
                "tools": [{"type": "function", **WEATHER_FUNCTION}],
                "tool_choice": {"type": "function", "name": "get_weather"},
            },
        )
        answered = await client.call_tool(
            "respond",
            {
                "model": "tool-chat",
                "input": [
                    {"role": "user", "content": "Weather in Paris?"},
                    {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"},
                ],
                "tools": [{"type": "function", **WEATHER_FUNCTION}],
                "tool_choice": "none",
            },
        )
    body = result.structured_content
    assert body is not None
    message, call = body["output"]
    assert message["content"][0]["text"] == "Let me check."
    assert (call["type"], call["name"], call["arguments"]) == (
        "function_call",
        "get_weather",
        WEATHER_ARGUMENTS,
    )
    assert answered.structured_content is not None
    assert answered.structured_content["output"][0]["content"][0]["text"] == "Hello"


async def test_a_batch_task_may_call_tools(services: Services, make_user: MakeUser) -> None:
    user = await make_user()
    task = {
        "custom_id": "weather",
        "model": "tool-chat",
        "request_body": {"messages": ASK, "tools": [{"type": "function", "function": WEATHER_FUNCTION}]},
    }
    batch = await submit(services, user, [task])
    done = await wait_for(services, user, batch.id)
    assert done.status == "completed", done
    [result] = (await services.batches.tasks(user.id, batch.id)).data
    assert result.result is not None
    message = result.result["choices"][0]["message"]
    assert [json.loads(c["function"]["arguments"]) for c in message["tool_calls"]] == [
        json.loads(WEATHER_ARGUMENTS)
    ] * 2
