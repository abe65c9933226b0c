"""Argument completion (completion/complete) over FastMCP's in-memory client: model ids the key may
call, and only the caller's own batch ids and prompt names, by prefix; nothing without the scope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp.types import ResourceTemplateReference

from batchin.config import Settings
from batchin.protocol.accounts import KeyCreateRequest
from batchin.services import Services
from tests.conftest import MakeUser
from tests.mcp.conftest import McpClientFactory
from tests.text_fixtures import scripted_services

SCRIPTED = ["scripted-chat", "scripted-faulty", "scripted-long", "scripted-broken"]
HI = [{"role": "user", "content": "Hi"}]
TASK = {"custom_id": "a", "model": "scripted-chat", "request_body": {"messages": HI}}


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with scripted_services(settings) as built:
        yield built


def template(uri: str) -> ResourceTemplateReference:
    return ResourceTemplateReference(type="ref/resource", uri=uri)


async def complete(client: Any, uri: str, name: str, value: str) -> list[str]:
    completion = await client.complete(template(uri), {"name": name, "value": value})
    values: list[str] = completion.values
    return values


async def test_the_server_declares_completions_prompts_and_subscriptions(
    mcp_client: McpClientFactory, make_user: MakeUser
) -> None:
    user = await make_user()
    async with mcp_client(user.api_key) as client:
        capabilities = client.server_capabilities
        completed = await complete(client, "batchin://models/{model_id}", "model_id", "scripted-c")
    assert capabilities is not None
    assert capabilities.completions is not None
    assert capabilities.prompts is not None
    assert capabilities.resources is not None
    assert capabilities.resources.subscribe
    assert completed == ["scripted-chat"]


async def test_model_ids_are_those_the_key_may_call(
    mcp_client: McpClientFactory, make_user: MakeUser, services: Services
) -> None:
    user = await make_user()
    narrow = await services.accounts.create_key(user.id, KeyCreateRequest(models=["scripted-long"]))
    async with mcp_client(user.api_key) as client:
        every = await complete(client, "batchin://models/{model_id}", "model_id", "scripted")
        wrong_argument = await complete(client, "batchin://models/{model_id}", "batch_id", "scripted")
    async with mcp_client(narrow.key) as client:
        allowed = await complete(client, "batchin://models/{model_id}", "model_id", "")
    assert sorted(every) == sorted(SCRIPTED)
    assert wrong_argument == []
    assert allowed == ["scripted-long"]


async def test_batch_ids_and_prompt_names_are_the_callers_own(
    mcp_client: McpClientFactory, make_user: MakeUser, services: Services
) -> None:
    owner, other = await make_user(), await make_user()
    async with mcp_client(owner.api_key) as client:
        batch = (await client.call_tool("submit_batch", {"tasks": [TASK]})).structured_content or {}
        for registry, text in (("support", "Hi {{name}}"), ("sales", "Sell.")):
            await client.call_tool("register_prompt_version", {"registry_id": registry, "template": text})
        batches = await complete(client, "batchin://batches/{batch_id}", "batch_id", batch["id"][:4])
        prompts = await complete(client, "batchin://prompts/{name}", "name", "su")
        mismatch = await complete(client, "batchin://batches/{batch_id}", "batch_id", "not-a-prefix")
    async with mcp_client(other.api_key) as client:
        others_batches = await complete(client, "batchin://batches/{batch_id}", "batch_id", "")
        others_prompts = await complete(client, "batchin://prompts/{name}", "name", "")
    narrow = await services.accounts.create_key(owner.id, KeyCreateRequest(scopes=["inference"]))
    async with mcp_client(narrow.key) as client:
        unscoped = await complete(client, "batchin://batches/{batch_id}", "batch_id", "")
    assert batches == [batch["id"]]
    assert sorted(prompts) == ["support@promoted", "support@v1"]
    assert mismatch == others_batches == others_prompts == unscoped == []
