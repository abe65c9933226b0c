"""Key permissions over MCP (issue 13): each tool and resource needs the scope its HTTP twin needs,
refused with the same 403 `permission_denied` envelope, and a model-restricted key is refused other
models per call."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from mcp.types import TextContent

from batchin.config import Settings
from batchin.protocol.accounts import ALL_SCOPES, KeyCreateRequest, Scope
from batchin.resources import ALL_RESOURCES
from batchin.services import Services
from batchin.tools import ALL_TOOLS
from tests.conftest import MakeUser
from tests.mcp.conftest import McpClientFactory
from tests.text_fixtures import scripted_services

ALLOWED_MODEL = "scripted-chat"
OTHER_MODEL = "scripted-long"
HELLO = [{"role": "user", "content": "Hi"}]
SCOPED_TOOLS = [(spec.function.__name__, spec.scope) for spec in ALL_TOOLS if spec.scope is not None]


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with scripted_services(settings) as built:
        yield built


def error_of(result: Any) -> dict[str, Any]:
    assert result.is_error
    text = result.content[0]
    assert isinstance(text, TextContent)
    return dict(json.loads(text.text)["error"])


async def key_with(services: Services, user_id: str, **fields: Any) -> str:
    return (await services.accounts.create_key(user_id, KeyCreateRequest(**fields))).key


@pytest.mark.parametrize(("tool", "scope"), SCOPED_TOOLS, ids=[name for name, _ in SCOPED_TOOLS])
async def test_a_key_without_the_tools_scope_is_refused(
    mcp_client: McpClientFactory, make_user: MakeUser, services: Services, tool: str, scope: Scope
) -> None:
    user = await make_user()
    key = await key_with(services, user.id, scopes=[s for s in ALL_SCOPES if s != scope])
    async with mcp_client(key) as client:
        # No arguments: the scope is checked before them, as HTTP checks it before the body.
        result = await client.call_tool(tool, {}, raise_on_error=False)
    error = error_of(result)
    assert (error["code"], error["status"], error["type"]) == ("permission_denied", 403, "permission_error")
    assert scope in error["message"]


async def test_every_tool_states_its_scope_like_its_http_twin() -> None:
    scopes = {spec.function.__name__: spec.scope for spec in ALL_TOOLS}
    assert scopes["chat"] == scopes["embed"] == scopes["generate_image"] == "inference"
    assert scopes["submit_batch"] == scopes["cancel_batch"] == "batches"
    assert scopes["create_audit_record"] == "audit:write"
    assert scopes["register_prompt_version"] == scopes["start_experiment"] == "prompts:write"
    assert scopes["update_prompt_registry"] == "prompts:write"
    assert scopes["usage_summary"] == scopes["get_trace"] == scopes["list_traces"] == "account:read"
    assert scopes["usage_logs"] == scopes["usage_by_model"] == scopes["topup_history"] == "account:read"
    assert scopes["list_keys"] == "account:read"
    assert scopes["create_key"] == scopes["revoke_key"] == "keys:write"
    assert scopes["list_models"] is scopes["verify_audit_record"] is None  # public on HTTP


async def test_a_key_with_the_scope_may_call_the_tool(
    mcp_client: McpClientFactory, make_user: MakeUser, services: Services
) -> None:
    user = await make_user()
    key = await key_with(services, user.id, scopes=["inference"])
    async with mcp_client(key) as client:
        chat = await client.call_tool("chat", {"model": ALLOWED_MODEL, "messages": HELLO})
        summary = await client.call_tool("usage_summary", {}, raise_on_error=False)
        models = await client.call_tool("list_models", {})
    assert not chat.is_error
    assert error_of(summary)["code"] == "permission_denied"
    assert not models.is_error


async def test_a_model_restricted_key_is_refused_other_models(
    mcp_client: McpClientFactory, make_user: MakeUser, services: Services
) -> None:
    user = await make_user()
    key = await key_with(services, user.id, models=[ALLOWED_MODEL])
    async with mcp_client(key) as client:
        refused = await client.call_tool(
            "chat", {"model": OTHER_MODEL, "messages": HELLO}, raise_on_error=False
        )
        allowed = await client.call_tool("chat", {"model": ALLOWED_MODEL, "messages": HELLO})
    error = error_of(refused)
    assert (error["code"], error["status"], error["param"]) == ("permission_denied", 403, "model")
    assert not allowed.is_error
    assert [log.model for log in await services.usage.list_logs(user.id)] == [ALLOWED_MODEL]


async def test_a_resource_needs_its_scope(
    mcp_client: McpClientFactory, make_user: MakeUser, services: Services
) -> None:
    assert {spec.name: spec.scope for spec in ALL_RESOURCES}["prompts"] == "account:read"
    user = await make_user()
    key = await key_with(services, user.id, scopes=["inference"])
    async with mcp_client(key) as client:
        with pytest.raises(MCPError, match="permission_denied"):
            await client.read_resource("batchin://prompts")
        assert await client.read_resource("batchin://models")
