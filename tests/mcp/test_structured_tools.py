"""The MCP `chat` and `respond` tools with `response_format`, on the embedded SmolLM2: the answer is
JSON matching the schema, and a schema the grammar cannot enforce is refused naming the parameter."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from batchin.services import Services
from tests.conftest import MakeUser
from tests.mcp.conftest import McpClientFactory

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
CITY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20},
        "size": {"type": "string", "enum": ["small", "large"]},
    },
    "required": ["city", "size"],
    "additionalProperties": False,
}


@pytest.fixture
def backend() -> str:
    return "sqlite"


async def test_chat_and_respond_take_response_format(
    mcp_client: McpClientFactory, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=1_000)
    fmt = {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY, "strict": True}}
    async with mcp_client(user.api_key) as client:
        chat = await client.call_tool(
            "chat",
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": "Name a city."}],
                "response_format": fmt,
            },
        )
        respond = await client.call_tool(
            "respond", {"model": MODEL, "input": "Name a big city.", "response_format": fmt, "temperature": 0}
        )
        any_object = await client.call_tool(
            "respond",
            {
                "model": MODEL,
                "input": "A JSON object, please.",
                "response_format": {"type": "json_object"},
                "temperature": 0,
                "max_output_tokens": 48,
            },
        )
    assert chat.structured_content is not None
    answer = json.loads(chat.structured_content["choices"][0]["message"]["content"])
    assert not list(Draft202012Validator(CITY).iter_errors(answer))
    assert respond.structured_content is not None
    assert respond.structured_content["text"]["format"]["name"] == "city"
    answer = json.loads(respond.structured_content["output"][0]["content"][0]["text"])
    assert not list(Draft202012Validator(CITY).iter_errors(answer))
    assert any_object.structured_content is not None
    text = any_object.structured_content["output"][0]["content"][0]["text"]
    # A small model may write one long string: cut at max_output_tokens, the object is unfinished
    # but still only what the grammar allows (it opens an object, no raw control characters).
    assert text.lstrip().startswith("{")
    assert not [c for c in text if ord(c) < 0x20 and c not in " \t\n\r"]
    if any_object.structured_content["status"] == "completed":
        assert isinstance(json.loads(text), dict)


async def test_an_unsupported_schema_is_refused_naming_the_parameter(
    mcp_client: McpClientFactory, make_user: MakeUser, services: Services
) -> None:
    user = await make_user(credit_cents=1_000)
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "integer", "maximum": 9}}}
    async with mcp_client(user.api_key) as client:
        chat = await client.call_tool(
            "chat",
            {"model": MODEL, "messages": [{"role": "user", "content": "A digit."}], "response_format": fmt},
            raise_on_error=False,
        )
        respond = await client.call_tool(
            "respond", {"model": MODEL, "input": "A digit.", "response_format": fmt}, raise_on_error=False
        )
    assert chat.is_error
    assert respond.is_error
    errors = [json.loads(result.content[0].text)["error"] for result in (chat, respond)]  # type: ignore[union-attr]
    assert [(e["code"], e["param"]) for e in errors] == [
        ("invalid_request", "response_format"),
        ("invalid_request", "text.format"),
    ]
    assert all("'maximum'" in e["message"] for e in errors)
    assert await services.usage.list_logs(user.id) == []
