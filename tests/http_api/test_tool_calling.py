"""Tool calling through the real app, on a scripted engine that takes tools: what core hands the
engine (tool set, tool_choice, tool messages), the OpenAI shapes of calls (whole, streamed, Responses
items and events, each checked against OpenAI's published schema), and the refusals."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from batchin.config import Settings
from batchin.models.base import ChatMessage, ToolCall, ToolSet
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser, assert_error, bearer
from tests.fakes.tool_call_runner import CATALOG, ENGINE, WEATHER_ARGUMENTS, ToolCallRunner
from tests.openai_reference import response_schema, violations
from tests.text_fixtures import CATALOG as SCRIPTED_CATALOG
from tests.text_fixtures import SCRIPTED_ENGINES, logs_of, scripted_services, sse_json

STREAM = "text/event-stream"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
ASK = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    engines = {**SCRIPTED_ENGINES, **ENGINE}
    async with scripted_services(settings, catalog=SCRIPTED_CATALOG + CATALOG, engines=engines) as built:
        yield built


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user()


async def engine_of(services: Services, model: str) -> ToolCallRunner:
    runner = await services.registry.runner(model)
    assert isinstance(runner, ToolCallRunner)
    return runner


async def post(client: httpx2.AsyncClient, user: UserCreated, path: str, **body: Any) -> httpx2.Response:
    return await client.post(path, json=body, headers=bearer(user.api_key))


def assert_valid(instance: Any, pointer: str) -> None:
    problems = violations(instance, pointer)
    assert not problems, "\n".join([*problems, json.dumps(instance)[:2000]])


# --- chat completions ------------------------------------------------------------------------------


async def test_calls_come_back_as_message_tool_calls(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await post(
        client, user, "/v1/chat/completions", model="tool-chat", messages=ASK, tools=[WEATHER]
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert_valid(body, response_schema("/chat/completions", "post"))
    [choice] = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    calls = choice["message"]["tool_calls"]
    assert [c["id"] for c in calls] == ["call_scripted_0", "call_scripted_1"]
    for call in calls:
        assert call["type"] == "function"
        assert call["function"] == {"name": "get_weather", "arguments": WEATHER_ARGUMENTS}


async def test_text_before_the_calls_is_the_content(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await post(
        client, user, "/v1/chat/completions", model="tool-chat-text", messages=ASK, tools=[WEATHER]
    )
    message = response.json()["choices"][0]["message"]
    assert message["content"] == "Let me check."
    assert len(message["tool_calls"]) == 1


async def test_streamed_calls_are_openai_pieces_that_join_into_the_calls(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    options = {"stream": True, "stream_options": {"include_usage": True}}
    response = await post(
        client, user, "/v1/chat/completions", model="tool-chat", messages=ASK, tools=[WEATHER], **options
    )
    chunks = sse_json(response.text)
    for chunk in chunks:
        assert_valid(chunk, response_schema("/chat/completions", "post", content=STREAM))
    joined: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for piece in choice["delta"].get("tool_calls", ()):
                call = joined.setdefault(piece["index"], {"id": "", "name": "", "arguments": ""})
                call["id"] += piece.get("id", "")
                call["name"] += piece["function"].get("name", "")
                call["arguments"] += piece["function"].get("arguments", "")
    assert joined == {
        i: {"id": f"call_scripted_{i}", "name": "get_weather", "arguments": WEATHER_ARGUMENTS} for i in (0, 1)
    }
    firsts = [
        p for c in chunks if c["choices"] for p in c["choices"][0]["delta"].get("tool_calls", ()) if "id" in p
    ]
    assert all(p["type"] == "function" for p in firsts)
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == 8


async def test_the_engine_gets_the_tool_set_and_tool_choice(
    client: httpx2.AsyncClient, user: UserCreated, services: Services
) -> None:
    engine = await engine_of(services, "tool-chat")
    named = {"type": "function", "function": {"name": "get_time"}}
    body = {"tools": [WEATHER, TIME], "tool_choice": named, "parallel_tool_calls": False}
    response = await post(client, user, "/v1/chat/completions", model="tool-chat", messages=ASK, **body)
    assert response.status_code == 200, response.text
    assert engine.last_params is not None
    tools = engine.last_params.tools
    assert isinstance(tools, ToolSet)
    assert (tools.choice, tools.function, tools.parallel) == ("required", "get_time", False)
    assert [f.name for f in tools.functions] == ["get_weather", "get_time"]
    assert json.loads(tools.functions[0].parameters) == WEATHER["function"]["parameters"]  # type: ignore[index]
    assert tools.functions[0].description == "Current weather in a city"
    assert json.loads(tools.functions[1].parameters) == {"type": "object", "properties": {}}
    [call] = response.json()["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "get_time"


async def test_tool_choice_none_answers_in_text(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await post(
        client,
        user,
        "/v1/chat/completions",
        model="tool-chat",
        messages=ASK,
        tools=[WEATHER],
        tool_choice="none",
    )
    choice = response.json()["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "Hello", "refusal": None}
    assert choice["finish_reason"] == "stop"


async def test_a_tool_round_trip_reaches_the_engine_as_calls_and_results(
    client: httpx2.AsyncClient, user: UserCreated, services: Services
) -> None:
    call = {
        "id": "call_7",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    messages = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_7", "content": [{"type": "text", "text": "Sunny, 22 C"}]},
    ]
    response = await post(
        client,
        user,
        "/v1/chat/completions",
        model="tool-chat",
        messages=messages,
        tools=[WEATHER],
        tool_choice="none",
    )
    assert response.status_code == 200, response.text
    engine = await engine_of(services, "tool-chat")
    assert engine.last_params is not None
    assert engine.last_params.messages[1:] == (
        ChatMessage("assistant", "", tool_calls=(ToolCall("call_7", "get_weather", '{"city":"Paris"}'),)),
        ChatMessage("tool", "Sunny, 22 C", tool_call_id="call_7"),
    )


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"tools": [WEATHER, WEATHER]}, "tools", "repeated: get_weather"),
        ({"tool_choice": "required"}, "tool_choice", "no tools"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
            "nope",
        ),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools", ""),
        ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools", ""),
        ({"tools": [WEATHER], "messages": [{"role": "tool", "content": "x"}]}, "messages", "tool_call_id"),
    ],
)
async def test_bad_tool_requests_are_400_naming_the_parameter(
    client: httpx2.AsyncClient, user: UserCreated, body: dict[str, Any], param: str, says: str
) -> None:
    request = {"model": "tool-chat", "messages": ASK, **body}
    error = assert_error(await post(client, user, "/v1/chat/completions", **request), 400, "invalid_request")
    assert (error["param"] or "").startswith(param)
    assert says in error["message"]


async def test_a_model_without_tool_calling_refuses_tools_and_bills_nothing(
    client: httpx2.AsyncClient, user: UserCreated, services: Services
) -> None:
    refused = await post(
        client, user, "/v1/chat/completions", model="scripted-chat", messages=ASK, tools=[WEATHER]
    )
    error = assert_error(refused, 400, "invalid_request")
    assert error["param"] == "tools"
    assert "scripted-chat" in error["message"]
    assert await logs_of(services, user) == []
    # Tools the model is told not to use are no reason to refuse.
    answered = await post(
        client,
        user,
        "/v1/chat/completions",
        model="scripted-chat",
        messages=ASK,
        tools=[WEATHER],
        tool_choice="none",
    )
    assert answered.status_code == 200, answered.text


# --- the Responses API -----------------------------------------------------------------------------

RESPONSE_TOOL = {"type": "function", **WEATHER["function"]}  # type: ignore[dict-item]


async def test_responses_calls_are_function_call_items(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await post(
        client,
        user,
        "/v1/responses",
        model="tool-chat-text",
        input="Weather in Paris?",
        tools=[RESPONSE_TOOL],
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert_valid(body, response_schema("/responses", "post"))
    message, call = body["output"]
    assert message["type"] == "message"
    assert message["content"][0]["text"] == "Let me check."
    assert call["type"] == "function_call"
    assert call["id"].startswith("fc_")
    assert (call["call_id"], call["name"], call["arguments"]) == (
        "call_scripted_0",
        "get_weather",
        WEATHER_ARGUMENTS,
    )
    assert call["status"] == "completed"
    assert body["tools"][0]["name"] == "get_weather"
    assert body["tool_choice"] == "auto"


async def test_responses_stream_function_call_events(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await post(
        client, user, "/v1/responses", model="tool-chat", input="Weather?", tools=[RESPONSE_TOOL], stream=True
    )
    events = sse_json(response.text)
    for event in events:
        assert_valid(event, response_schema("/responses", "post", content=STREAM))
    kinds = [e["type"] for e in events]
    one_call = [
        "response.output_item.added",
        *["response.function_call_arguments.delta"] * 3,
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    assert kinds == ["response.created", "response.in_progress", *one_call, *one_call, "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["function_call", "function_call"]
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [e["arguments"] for e in done] == [WEATHER_ARGUMENTS] * 2
    assert [e["item_id"] for e in done] == [item["id"] for item in final["output"]]
    assert [e["output_index"] for e in done] == [0, 1]


async def test_responses_function_call_output_reaches_the_engine(
    client: httpx2.AsyncClient, user: UserCreated, services: Services
) -> None:
    items = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "type": "function_call",
            "call_id": "call_9",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_9", "output": "Sunny, 22 C"},
    ]
    response = await post(
        client,
        user,
        "/v1/responses",
        model="tool-chat",
        input=items,
        tools=[RESPONSE_TOOL],
        tool_choice="none",
    )
    assert response.status_code == 200, response.text
    assert response.json()["output"][0]["content"][0]["text"] == "Hello"
    engine = await engine_of(services, "tool-chat")
    assert engine.last_params is not None
    assert engine.last_params.messages == (
        ChatMessage("user", "Weather in Paris?"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("call_9", "get_weather", '{"city":"Paris"}'),)),
        ChatMessage("tool", "Sunny, 22 C", tool_call_id="call_9"),
    )
    assert engine.last_params.tools is not None
    assert engine.last_params.tools.choice == "none"


async def test_responses_named_tool_choice(
    client: httpx2.AsyncClient, user: UserCreated, services: Services
) -> None:
    time_tool = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}
    response = await post(
        client,
        user,
        "/v1/responses",
        model="tool-chat",
        input="What time is it?",
        tools=[RESPONSE_TOOL, time_tool],
        tool_choice={"type": "function", "name": "get_time"},
        parallel_tool_calls=False,
    )
    body = response.json()
    assert [item["name"] for item in body["output"]] == ["get_time"]
    assert body["tool_choice"] == {"type": "function", "name": "get_time"}
    assert body["parallel_tool_calls"] is False
    assert_valid(body, response_schema("/responses", "post"))


async def test_responses_hosted_tools_are_refused(client: httpx2.AsyncClient, user: UserCreated) -> None:
    refused = await post(
        client, user, "/v1/responses", model="tool-chat", input="hi", tools=[{"type": "web_search"}]
    )
    error = assert_error(refused, 400, "invalid_request")
    assert (error["param"] or "").startswith("tools")
