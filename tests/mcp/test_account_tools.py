"""The account tools (keys, usage, top-ups, traces) over FastMCP's in-memory client, against their
HTTP twins on the same services: the same results, the same scopes, and a key never creating or
revoking a key stronger than itself. Every tool answers with readable text and the whole result as
structured content."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx2
import pytest
from mcp.types import TextContent

from batchin.config import Settings
from batchin.protocol.accounts import KeyCreateRequest
from batchin.services import Services
from tests.conftest import MakeUser, bearer
from tests.mcp.conftest import McpClientFactory
from tests.text_fixtures import scripted_services

HELLO = [{"role": "user", "content": "Hi"}]


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    # A rate, so the scripted catalog (USD prices only) has CNY prices for CNY accounts too.
    async with scripted_services(settings, cny_per_usd=Decimal("7")) as built:
        yield built


def text_of(result: Any) -> str:
    assert len(result.content) == 1
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


def error_of(result: Any) -> dict[str, Any]:
    assert result.is_error
    return dict(json.loads(text_of(result))["error"])


async def test_chat_answers_with_the_assistants_message_and_the_completion_as_structured_content(
    mcp_client: McpClientFactory, make_user: MakeUser
) -> None:
    user = await make_user()
    async with mcp_client(user.api_key) as client:
        result = await client.call_tool("chat", {"model": "scripted-chat", "messages": HELLO})
    completion = result.structured_content or {}
    assert text_of(result) == "Hello, world!"
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["content"] == "Hello, world!"


async def test_account_reads_match_their_http_twins(
    mcp_client: McpClientFactory, make_user: MakeUser, client: httpx2.AsyncClient
) -> None:
    user = await make_user(credit_cents=5_000)
    headers = bearer(user.api_key)
    async with mcp_client(user.api_key) as mcp:
        for _ in range(3):
            await mcp.call_tool("chat", {"model": "scripted-chat", "messages": HELLO})
        keys = await mcp.call_tool("list_keys", {})
        first_page = await mcp.call_tool("usage_logs", {"limit": 2})
        last_page = await mcp.call_tool("usage_logs", {"limit": 2, "offset": 2})
        by_model = await mcp.call_tool("usage_by_model", {})
        topups = await mcp.call_tool("topup_history", {})
        traces = await mcp.call_tool("list_traces", {"limit": 5})
    http_logs = (await client.get("/v1/usage/logs?limit=4", headers=headers)).json()
    assert (keys.structured_content or {})["result"] == (await client.get("/v1/keys", headers=headers)).json()
    assert (first_page.structured_content or {}) == {"data": http_logs[:2], "next_offset": 2}
    assert (last_page.structured_content or {}) == {"data": http_logs[2:], "next_offset": None}
    assert "offset=2" in text_of(first_page)
    http_by_model = (await client.get("/v1/usage/by-model", headers=headers)).json()
    assert (by_model.structured_content or {})["result"] == http_by_model
    assert "scripted-chat: 3 requests" in text_of(by_model)
    http_topups = (await client.get("/v1/topup/history", headers=headers)).json()
    assert (topups.structured_content or {})["result"] == http_topups
    assert "5000 cents" in text_of(topups)
    http_traces = (await client.get("/v1/traces?limit=5", headers=headers)).json()
    assert (traces.structured_content or {}) == http_traces
    assert all(t["trace_id"] in text_of(traces) for t in http_traces["items"])


async def test_a_cny_account_sees_its_models_and_amounts_in_cny_and_fen(
    mcp_client: McpClientFactory, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=5_000, currency="CNY")
    async with mcp_client(user.api_key) as mcp:
        models = await mcp.call_tool("list_models", {})
        topups = await mcp.call_tool("topup_history", {})
        keys = await mcp.call_tool("list_keys", {})
    cards = {c["id"]: c["pricing"] for c in (models.structured_content or {})["data"]}
    assert {p["currency"] for p in cards.values()} == {"CNY"}
    assert cards["scripted-chat"]["std_input"] == 10.5  # $1.5 per 1M at 7 yuan per dollar
    assert "5000 fen via admin" in text_of(topups)
    assert "spent 0 fen this month" in text_of(keys)


async def test_create_key_is_bounded_by_the_creating_key_and_revoke_takes_effect(
    mcp_client: McpClientFactory, make_user: MakeUser, services: Services
) -> None:
    user = await make_user()
    manager = await services.accounts.create_key(
        user.id, KeyCreateRequest(scopes=["keys:write", "account:read", "inference"], rate_limit_rpm=30)
    )
    async with mcp_client(manager.key) as mcp:
        wider = await mcp.call_tool("create_key", {"scopes": ["billing"]}, raise_on_error=False)
        faster = await mcp.call_tool("create_key", {"rate_limit_rpm": 31}, raise_on_error=False)
        created = await mcp.call_tool("create_key", {"name": "worker", "scopes": ["inference", "keys:write"]})
        key = created.structured_content or {}
        listed = await mcp.call_tool("list_keys", {})
    assert (error_of(wider)["code"], error_of(wider)["param"]) == ("permission_denied", "scopes")
    assert (error_of(faster)["code"], error_of(faster)["param"]) == ("permission_denied", "rate_limit_rpm")
    assert (key["scopes"], key["rate_limit_rpm"], key["name"]) == (["inference", "keys:write"], 30, "worker")
    assert key["key"] in text_of(created)  # the secret, shown once
    assert key["id"] in [k["id"] for k in (listed.structured_content or {})["result"]]
    async with mcp_client(key["key"]) as mcp:  # the new key works, and may not revoke its maker
        assert not (await mcp.call_tool("chat", {"model": "scripted-chat", "messages": HELLO})).is_error
        refused = await mcp.call_tool("revoke_key", {"key_id": manager.id}, raise_on_error=False)
    assert error_of(refused)["code"] == "permission_denied"
    assert error_of(refused)["message"].startswith("Cannot revoke a key with scopes this key lacks")
    async with mcp_client(manager.key) as mcp:
        revoked = await mcp.call_tool("revoke_key", {"key_id": key["id"]})
    assert (revoked.structured_content or {}) == {"id": key["id"], "object": "key.revoked", "revoked": True}
    async with mcp_client(key["key"]) as mcp:
        gone = await mcp.call_tool("list_models", {}, raise_on_error=False)
    assert error_of(gone)["code"] == "unauthorized"


async def test_every_tool_result_object_comes_with_readable_text_and_an_output_schema(
    mcp_client: McpClientFactory, make_user: MakeUser
) -> None:
    user = await make_user()
    async with mcp_client(user.api_key) as mcp:
        tools = await mcp.list_tools()
        summary = await mcp.call_tool("usage_summary", {})
        models = await mcp.call_tool("list_models", {})
    assert all(tool.output_schema is not None for tool in tools)
    assert text_of(summary) == "So far: 0 requests, 0 input and 0 output tokens, 0 cents."
    count = len((models.structured_content or {})["data"])
    assert text_of(models).splitlines()[0] == f"{count} models (pass an id as `model`):"
