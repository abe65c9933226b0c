"""Tool calling from the clients agent builders use, against a live `batchin serve` on the embedded
default model (SmolLM2, tools written into its prompt by us, calls held to the schemas by a grammar):
the openai SDK (create, its parse and stream helpers, the Responses API) and LangChain's
`bind_tools`, each through a full round trip: call → tool result → answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import jsonschema
import openai
import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam
from pydantic import BaseModel

from tests.live_server import LiveServer, live_server

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
WEATHER_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 30},
        "unit": {"type": "string", "enum": ["c", "f"]},
    },
    "required": ["city", "unit"],
}
WEATHER: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": WEATHER_PARAMETERS,
    },
}
ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is the weather in Paris?"}]
FORCED = {"type": "function", "function": {"name": "get_weather"}}
WEATHER_REPORT = '{"city": "Paris", "conditions": "sunny", "temperature": 22}'


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("live-tools")) as server:
        yield server


def valid_weather(arguments: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(arguments)
    jsonschema.validate(parsed, WEATHER_PARAMETERS)
    return parsed


# --- openai SDK: chat completions ------------------------------------------------------------------


def test_sdk_round_trip_call_result_answer(live: LiveServer) -> None:
    with live.client() as client:
        first = client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=[WEATHER],
            tool_choice=FORCED,
            parallel_tool_calls=False,  # one call, then the turn ends: no tokens spent on more
            max_tokens=48,
            temperature=0,
        )
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.tool_calls
        call = choice.message.tool_calls[0]
        assert call.type == "function"
        assert call.function.name == "get_weather"
        valid_weather(call.function.arguments)
        conversation: list[ChatCompletionMessageParam] = [
            *ASK,
            choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": WEATHER_REPORT},
        ]
        final = client.chat.completions.create(
            model=MODEL, messages=conversation, tools=[WEATHER], max_tokens=24, temperature=0
        )
    answer = final.choices[0]
    assert answer.message.content
    assert answer.finish_reason in ("stop", "length")


def test_sdk_stream_helper_assembles_the_call(live: LiveServer) -> None:
    with (
        live.client() as client,
        client.chat.completions.stream(
            model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=48, temperature=0
        ) as stream,
    ):
        kinds = [event.type for event in stream]
        completion = stream.get_final_completion()
    assert "tool_calls.function.arguments.delta" in kinds
    assert "tool_calls.function.arguments.done" in kinds
    message = completion.choices[0].message
    assert message.tool_calls
    assert message.tool_calls[0].function.name == "get_weather"
    valid_weather(message.tool_calls[0].function.arguments)
    assert completion.choices[0].finish_reason == "tool_calls"


class GetWeather(BaseModel):
    """Current weather in a city."""

    city: str
    unit: Literal["c", "f"]


def test_sdk_parse_helper_gives_typed_arguments_of_a_strict_tool(live: LiveServer) -> None:
    with live.client() as client:
        parsed = client.chat.completions.parse(
            model=MODEL,
            messages=ASK,
            tools=[openai.pydantic_function_tool(GetWeather)],
            tool_choice={"type": "function", "function": {"name": "GetWeather"}},
            max_tokens=48,
            temperature=0,
        )
    [call] = parsed.choices[0].message.tool_calls or []
    assert isinstance(call.function.parsed_arguments, GetWeather)
    assert call.function.parsed_arguments.unit in ("c", "f")


# --- openai SDK: the Responses API -----------------------------------------------------------------

RESPONSE_WEATHER = {"type": "function", "strict": False, **WEATHER["function"]}


def test_sdk_responses_function_call_and_its_output(live: LiveServer) -> None:
    with live.client() as client:
        with client.responses.stream(
            model=MODEL,
            input="What is the weather in Paris?",
            tools=[RESPONSE_WEATHER],  # type: ignore[list-item]
            tool_choice="required",
            parallel_tool_calls=False,
            max_output_tokens=48,
            temperature=0,
        ) as stream:
            kinds = {event.type for event in stream}
            first = stream.get_final_response()
        assert "response.function_call_arguments.delta" in kinds
        [call] = [item for item in first.output if item.type == "function_call"]
        assert call.name == "get_weather"
        valid_weather(call.arguments)
        final = client.responses.create(
            model=MODEL,
            input=[
                {"role": "user", "content": "What is the weather in Paris?"},
                {
                    "type": "function_call",
                    "call_id": call.call_id,
                    "name": call.name,
                    "arguments": call.arguments,
                },
                {"type": "function_call_output", "call_id": call.call_id, "output": WEATHER_REPORT},
            ],
            tools=[RESPONSE_WEATHER],  # type: ignore[list-item]
            tool_choice="none",
            max_output_tokens=24,
            temperature=0,
        )
    assert final.output_text
    assert final.status in ("completed", "incomplete")


# --- LangChain -------------------------------------------------------------------------------------


@tool
def get_weather(city: str, unit: Literal["c", "f"]) -> str:
    """Current weather in a city."""
    return WEATHER_REPORT


def chat_model(live: LiveServer) -> ChatOpenAI:
    return ChatOpenAI(
        model=MODEL,
        base_url=f"{live.base_url}/v1",
        api_key=live.api_key,
        temperature=0,
        max_tokens=48,
        max_retries=0,
    )


def test_langchain_bind_tools_round_trip(live: LiveServer) -> None:
    llm = chat_model(live)
    ask = [HumanMessage("What is the weather in Paris?")]
    called = llm.bind_tools([get_weather], tool_choice="get_weather", parallel_tool_calls=False).invoke(ask)
    [call] = called.tool_calls[:1]
    assert call["name"] == "get_weather"
    jsonschema.validate(call["args"], get_weather.tool_call_schema.model_json_schema())
    result = get_weather.invoke(call)
    assert isinstance(result, ToolMessage)
    answer = llm.bind_tools([get_weather]).invoke([*ask, called, result])
    assert isinstance(answer.content, str)
    assert answer.content.strip()


def test_langchain_streams_tool_call_chunks_that_join(live: LiveServer) -> None:
    llm = chat_model(live).bind_tools([get_weather], tool_choice="any")
    joined: AIMessageChunk | None = None
    pieces = 0
    for chunk in llm.stream("What is the weather in Paris?"):
        assert isinstance(chunk, AIMessageChunk)
        pieces += len(chunk.tool_call_chunks)
        joined = chunk if joined is None else joined + chunk
    assert joined is not None
    assert pieces > 2  # the arguments arrived in pieces
    assert joined.tool_calls[0]["name"] == "get_weather"
    jsonschema.validate(joined.tool_calls[0]["args"], get_weather.tool_call_schema.model_json_schema())
