"""The prompt tools and the batchin://prompts resource over FastMCP's in-memory client: the same
results as /v1/prompts and /v1/experiments (scripted runners, no model)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from batchin.config import Settings
from batchin.services import Services
from tests.conftest import MakeUser, bearer
from tests.mcp.conftest import McpClientFactory
from tests.prompt_fixtures import GENEROUS_BOUNDS, chat, prompt_services

BASE = "You are a support agent."


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    # No automatic experiments: the tools start them.
    async with prompt_services(settings, prompt_auto_experiments=False, **GENEROUS_BOUNDS) as built:
        yield built


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    body: dict[str, Any] = result.structured_content
    return body


async def test_the_prompt_tools_are_listed(mcp_client: McpClientFactory, make_user: MakeUser) -> None:
    user = await make_user()
    async with mcp_client(user.api_key) as client:
        names = {tool.name for tool in await client.list_tools()}
        resources = {str(r.uri) for r in await client.list_resources()}
    assert {
        "list_prompts",
        "register_prompt_version",
        "update_prompt_registry",
        "start_experiment",
        "get_experiment",
    } <= names
    assert "batchin://prompts" in resources


async def test_register_experiment_and_read_back(
    mcp_client: McpClientFactory, make_user: MakeUser, services: Services, client: httpx2.AsyncClient
) -> None:
    user = await make_user()
    async with mcp_client(user.api_key) as mcp:
        opted_in = structured(
            await mcp.call_tool(
                "update_prompt_registry", {"registry_id": "support", "experiments_enabled": True}
            )
        )
    assert (opted_in["registry_id"], opted_in["experiments_enabled"]) == ("support", True)
    for header in ("support@v1", "support@v1"):
        await chat(services, user, BASE, header=header)
    async with mcp_client(user.api_key) as mcp:
        registered = structured(
            await mcp.call_tool("register_prompt_version", {"registry_id": "support", "template": BASE})
        )
        assert (registered["version_id"], registered["status"]) == ("support@v2", "observed")
        started = structured(
            await mcp.call_tool(
                "start_experiment",
                {"registry_id": "support", "candidate_version_id": "support@v2", "sample_size": 1},
            )
        )
        assert (started["status"], started["trigger"]) == ("queued", "manual")
        await services.experiments.run_pending()
        got = structured(await mcp.call_tool("get_experiment", {"experiment_id": started["experiment_id"]}))
        listed = structured(await mcp.call_tool("list_prompts", {}))
        resource = json.loads((await mcp.read_resource("batchin://prompts"))[0].text)  # type: ignore[union-attr]
    assert (got["status"], got["promotion_status"], got["sample_count"]) == ("passed", "promoted", 1)
    over_http = await client.get(f"/v1/experiments/{started['experiment_id']}", headers=bearer(user.api_key))
    assert got == over_http.json()
    prompts_http = (await client.get("/v1/prompts", headers=bearer(user.api_key))).json()
    assert listed == prompts_http == resource


async def test_tool_refusals_carry_http_codes(mcp_client: McpClientFactory, make_user: MakeUser) -> None:
    user = await make_user()
    async with mcp_client(user.api_key) as mcp:
        missing = await mcp.call_tool("get_experiment", {"experiment_id": "pexp_nope"}, raise_on_error=False)
        invalid = await mcp.call_tool(
            "register_prompt_version", {"registry_id": "a/b", "template": "x"}, raise_on_error=False
        )
    assert missing.is_error
    assert json.loads(missing.content[0].text)["error"]["code"] == "not_found"  # type: ignore[union-attr]
    error = json.loads(invalid.content[0].text)["error"]  # type: ignore[union-attr]
    assert (error["code"], error["param"]) == ("invalid_request", "registry_id")
