"""Tool calling on the embedded engines through the app (engines in their worker processes):
Qwen2.5-Coder, whose own template shows tools, decides by itself to call under tool_choice `auto`;
SmolLM2's streamed calls and the Responses items validate against OpenAI's published schema."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import jsonschema
import pytest

from batchin.protocol.accounts import UserCreated
from tests.conftest import MakeUser, bearer
from tests.openai_reference import response_schema, violations
from tests.text_fixtures import sse_json

pytestmark = pytest.mark.slow

QWEN = "qwen2.5-coder-0.5b-instruct"
SMOLLM2 = "smollm2-135m-instruct"
PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 30},
        "unit": {"type": "string", "enum": ["c", "f"]},
    },
    "required": ["city"],
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": PARAMETERS,
    },
}
ASK = [{"role": "user", "content": "What's the weather like in Paris today?"}]


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the shapes do not depend on the store


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user(credit_cents=1_000)


async def post(client: httpx2.AsyncClient, user: UserCreated, path: str, **body: Any) -> Any:
    response = await client.post(path, json=body, headers=bearer(user.api_key), timeout=600)
    assert response.status_code == 200, response.text
    return response


async def test_qwen_calls_a_tool_by_itself_with_valid_arguments(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    body = (
        await post(
            client,
            user,
            "/v1/chat/completions",
            model=QWEN,
            messages=ASK,
            tools=[WEATHER],
            temperature=0,
            max_tokens=64,
        )
    ).json()
    assert violations(body, response_schema("/chat/completions", "post")) == []
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    arguments = json.loads(call["function"]["arguments"])
    jsonschema.validate(arguments, PARAMETERS)
    assert "paris" in arguments["city"].lower()


async def test_smollm2_streamed_calls_validate_and_join(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    response = await post(
        client,
        user,
        "/v1/chat/completions",
        model=SMOLLM2,
        messages=ASK,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        stream=True,
        stream_options={"include_usage": True},
        temperature=0,
        max_tokens=48,
    )
    chunks = sse_json(response.text)
    for chunk in chunks:
        assert (
            violations(chunk, response_schema("/chat/completions", "post", content="text/event-stream")) == []
        )
    pieces = [p for c in chunks if c["choices"] for p in c["choices"][0]["delta"].get("tool_calls", ())]
    assert pieces[0]["id"].startswith("call_")
    assert pieces[0]["function"]["name"] == "get_weather"
    arguments = "".join(p["function"].get("arguments", "") for p in pieces)
    jsonschema.validate(json.loads(arguments), PARAMETERS)
    assert len(pieces) > 3  # the arguments streamed in fragments
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


async def test_smollm2_responses_function_call_events_validate(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    tool = {"type": "function", **WEATHER["function"]}  # type: ignore[dict-item]
    response = await post(
        client,
        user,
        "/v1/responses",
        model=SMOLLM2,
        input="What's the weather like in Paris today?",
        tools=[tool],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
        stream=True,
        temperature=0,
        max_output_tokens=48,
    )
    events = sse_json(response.text)
    for event in events:
        assert violations(event, response_schema("/responses", "post", content="text/event-stream")) == []
    final = events[-1]["response"]
    [call] = final["output"]
    assert call["type"] == "function_call"
    jsonschema.validate(json.loads(call["arguments"]), PARAMETERS)


async def refusal(client: httpx2.AsyncClient, user: UserCreated, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/chat/completions", json=body, headers=bearer(user.api_key))
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


async def test_what_the_grammar_cannot_hold_is_refused_when_strict(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    bounded = {
        **PARAMETERS,
        "properties": {**PARAMETERS["properties"], "days": {"type": "integer", "maximum": 7}},
    }
    strict = {**WEATHER, "function": {**WEATHER["function"], "parameters": bounded, "strict": True}}
    error = await refusal(client, user, model=SMOLLM2, messages=ASK, tools=[strict])
    assert (error["code"], error["param"]) == ("invalid_request", "tools")
    assert "maximum" in error["message"]
    # Not strict: taken (the bound is the caller's to check); an invalid schema is refused either way.
    loose = {**WEATHER, "function": {**WEATHER["function"], "parameters": bounded}}
    await post(client, user, "/v1/chat/completions", model=SMOLLM2, messages=ASK, tools=[loose], max_tokens=8)
    broken = {**WEATHER, "function": {**WEATHER["function"], "parameters": {"type": "nonsense"}}}
    error = await refusal(client, user, model=SMOLLM2, messages=ASK, tools=[broken])
    assert error["param"] == "tools"


async def test_tools_cannot_be_combined_with_a_response_format_or_logprobs_here(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    json_format = {"type": "json_object"}
    error = await refusal(
        client, user, model=SMOLLM2, messages=ASK, tools=[WEATHER], response_format=json_format
    )
    assert error["param"] == "response_format"
    error = await refusal(client, user, model=SMOLLM2, messages=ASK, tools=[WEATHER], logprobs=True)
    assert error["param"] == "logprobs"
    # With tool_choice none the tools are not shown: both are fine.
    await post(
        client,
        user,
        "/v1/chat/completions",
        model=SMOLLM2,
        messages=ASK,
        tools=[WEATHER],
        tool_choice="none",
        response_format=json_format,
        logprobs=True,
        max_tokens=8,
    )
