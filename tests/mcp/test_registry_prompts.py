"""The prompt registry as MCP prompts (prompts/list, prompts/get) over FastMCP's in-memory client:
registered versions and the `promoted` label, arguments from the template's variables, the caller's
own registry only, and the `account:read` scope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from mcp.shared.exceptions import MCPError
from mcp.types import TextContent

from batchin.config import Settings
from batchin.protocol.accounts import KeyCreateRequest
from batchin.services import Services
from tests.conftest import MakeUser, bearer
from tests.mcp.conftest import McpClientFactory
from tests.prompt_fixtures import prompt_services

TEMPLATE = "You answer for {{company}} in {{language}}."
VERSION_META = "batchin.tech/prompt_version"


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with prompt_services(settings, prompt_auto_experiments=False) as built:
        yield built


async def register(mcp: Any, registry_id: str, template: str) -> str:
    arguments = {"registry_id": registry_id, "template": template}
    result = await mcp.call_tool("register_prompt_version", arguments)
    version_id: str = result.structured_content["version_id"]
    return version_id


async def test_registered_versions_and_the_promoted_label_are_listed_with_their_variables(
    mcp_client: McpClientFactory, make_user: MakeUser, client: httpx2.AsyncClient
) -> None:
    user = await make_user()
    async with mcp_client(user.api_key) as mcp:
        first = await register(mcp, "support", TEMPLATE)  # a new registry's first version is promoted
        before = {p.name: p for p in await mcp.list_prompts()}
        second = await register(mcp, "support", "Be brief.")
        promoted = await client.post(
            "/v1/prompts/support/labels",
            json={"action": "promote", "version_id": second, "reason": "shorter"},
            headers=bearer(user.api_key),
        )
        assert promoted.status_code == 200, promoted.text
        after = {p.name: p for p in await mcp.list_prompts()}
    assert (first, second) == ("support@v1", "support@v2")
    assert set(before) == {"support@v1", "support@promoted"}
    assert [a.name for a in before["support@promoted"].arguments or []] == ["company", "language"]
    assert (before["support@promoted"].meta or {})[VERSION_META] == "support@v1"
    assert set(after) == {"support@v1", "support@v2", "support@promoted"}
    arguments = [(a.name, a.required) for a in after["support@v1"].arguments or []]
    assert arguments == [("company", True), ("language", True)]
    assert after["support@v2"].arguments == []
    assert (after["support@promoted"].meta or {})[VERSION_META] == "support@v2"


async def test_get_renders_the_template_with_the_arguments(
    mcp_client: McpClientFactory, make_user: MakeUser
) -> None:
    user = await make_user()
    async with mcp_client(user.api_key) as mcp:
        await register(mcp, "support", TEMPLATE)
        got = await mcp.get_prompt("support@v1", {"company": "Acme", "language": "Dutch"})
        by_label = await mcp.get_prompt("support@promoted", {"company": "Acme", "language": "Dutch"})
        with pytest.raises(MCPError, match="missing argument 'language'"):
            await mcp.get_prompt("support@v1", {"company": "Acme"})
    [message] = got.messages
    assert message.role == "user"
    assert isinstance(message.content, TextContent)
    assert message.content.text == "You answer for Acme in Dutch."
    assert (got.meta or {})[VERSION_META] == (by_label.meta or {})[VERSION_META] == "support@v1"
    assert by_label.messages == got.messages


async def test_a_caller_sees_only_its_own_registry(mcp_client: McpClientFactory, make_user: MakeUser) -> None:
    owner, other = await make_user(), await make_user()
    async with mcp_client(owner.api_key) as mcp:
        await register(mcp, "secret-sauce", "The recipe is {{recipe}}.")
    async with mcp_client(other.api_key) as mcp:
        assert await mcp.list_prompts() == []
        with pytest.raises(MCPError, match="Unknown prompt"):
            await mcp.get_prompt("secret-sauce@v1", {"recipe": "x"})


async def test_a_key_without_account_read_lists_none_and_is_refused(
    mcp_client: McpClientFactory, make_user: MakeUser, services: Services
) -> None:
    user = await make_user()
    async with mcp_client(user.api_key) as mcp:
        await register(mcp, "support", "Be brief.")
    narrow = await services.accounts.create_key(user.id, KeyCreateRequest(scopes=["inference"]))
    async with mcp_client(narrow.key) as mcp:
        assert await mcp.list_prompts() == []
        with pytest.raises(MCPError, match="permission_denied"):
            await mcp.get_prompt("support@v1")
