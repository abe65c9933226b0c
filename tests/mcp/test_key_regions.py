"""Regions over MCP (issue 13): a tool call enters the region its key is bound to, and over HTTP
its X-BatchIn-Region header is judged as an HTTP request's is (trusted proxy or the key's own)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from mcp.types import TextContent

from batchin.app import create_app
from batchin.config import RegionLimit, Settings
from batchin.protocol.accounts import KeyCreateRequest
from batchin.services import Services
from tests.conftest import MakeUser, bearer
from tests.mcp.conftest import McpClientFactory
from tests.text_fixtures import scripted_services

MODEL = "scripted-chat"
HELLO = [{"role": "user", "content": "Hi"}]
# "us" is the default region, without limits; "eu" allows one call a minute.
REGIONS: dict[str, Any] = {
    "region": "us",
    "regions": ["us", "eu"],
    "region_limits": [RegionLimit(region="eu", model=MODEL, rpm=1)],
    "trusted_proxies": ["10.0.0.0/8"],
}


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with scripted_services(settings, **REGIONS) as built:
        yield built


def error_of(result: Any) -> dict[str, Any]:
    assert result.is_error
    text = result.content[0]
    assert isinstance(text, TextContent)
    return dict(json.loads(text.text)["error"])


async def key_in(services: Services, user_id: str, *regions: str) -> str:
    return (await services.accounts.create_key(user_id, KeyCreateRequest(regions=list(regions)))).key


async def test_a_tool_call_enters_the_region_its_key_is_bound_to(
    mcp_client: McpClientFactory, make_user: MakeUser, services: Services
) -> None:
    user = await make_user()
    bound = await key_in(services, user.id, "eu")
    async with mcp_client(bound) as client:
        assert not (await client.call_tool("chat", {"model": MODEL, "messages": HELLO})).is_error
        limited = await client.call_tool("chat", {"model": MODEL, "messages": HELLO}, raise_on_error=False)
    assert error_of(limited)["code"] == "rate_limited"
    async with mcp_client(user.api_key) as client:  # unbound: the default region, no limit
        for _ in range(3):
            assert not (await client.call_tool("chat", {"model": MODEL, "messages": HELLO})).is_error


async def call_over_http(services: Services, key: str, *, peer: str, region: str) -> dict[str, Any]:
    """One `chat` tool call over Streamable HTTP (stateless) from `peer`; its JSON-RPC result."""
    app = create_app(services.settings, services)
    transport = httpx2.ASGITransport(app=app, client=(peer, 5555))
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "chat", "arguments": {"model": MODEL, "messages": HELLO}},
    }
    headers = {
        **bearer(key),
        "X-BatchIn-Region": region,
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-06-18",
    }
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        response = await client.post("/v1/mcp", json=body, headers=headers)
    assert response.status_code == 200, response.text
    data = next(line[5:] for line in response.text.splitlines() if line.startswith("data:"))
    result: dict[str, Any] = json.loads(data)["result"]
    return result


async def test_a_forged_region_header_over_mcp_http_is_refused(
    make_user: MakeUser, services: Services
) -> None:
    user = await make_user()
    result = await call_over_http(services, user.api_key, peer="203.0.113.9", region="eu")
    assert result["isError"] is True
    error = json.loads(result["content"][0]["text"])["error"]
    assert (error["code"], error["param"]) == ("permission_denied", "X-BatchIn-Region")


async def test_a_trusted_proxys_region_header_over_mcp_http_is_honoured(
    make_user: MakeUser, services: Services
) -> None:
    user = await make_user()
    first = await call_over_http(services, user.api_key, peer="10.0.0.7", region="eu")
    assert first["isError"] is False
    second = await call_over_http(services, user.api_key, peer="10.0.0.7", region="eu")
    assert json.loads(second["content"][0]["text"])["error"]["code"] == "rate_limited"
