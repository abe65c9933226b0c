"""Completions, prompts, readable tool results and resource subscriptions with the official `mcp`
Python client, against a running `batchin serve` over Streamable HTTP (/v1/mcp, protocol
2026-07-28, bearer key) and against `batchin mcp` over stdio (2026-07-28 `subscriptions/listen`,
and a 2025 session's `resources/subscribe`, as desktop clients send it)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import ResourceTemplateReference, ResourceUpdatedNotification, TextContent

from tests.live_server import BATCHIN, LiveServer, create_user, live_server

pytestmark = pytest.mark.slow

CHAT_MODEL = "smollm2-135m-instruct"
VIDEO_MODEL = "tiny-random-video"
HELLO = [{"role": "user", "content": "Say hello."}]
ENDED = {"completed", "failed", "expired", "cancelled"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("mcp-features")) as server:
        yield server


@asynccontextmanager
async def over_http(live: LiveServer, api_key: str | None = None, **options: Any) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {api_key or live.api_key}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http:
        transport = streamable_http_client(f"{live.base_url}/v1/mcp", http_client=http)
        async with Client(transport, **options) as client:
            yield client


def over_stdio(live: LiveServer, api_key: str, **options: Any) -> Client:
    env = {**live.env, "BATCHIN_API_KEY": api_key}
    return Client(StdioServerParameters(command=str(BATCHIN), args=["mcp"], env=env), **options)


def text_of(result: Any) -> str:
    [block] = result.content
    assert isinstance(block, TextContent)
    return block.text


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    body: dict[str, Any] = result.structured_content
    return body


async def read_json(client: Client, uri: str) -> dict[str, Any]:
    [content] = (await client.read_resource(uri)).contents
    body: dict[str, Any] = json.loads(getattr(content, "text", ""))
    return body


async def follow(client: Client, uris: list[str], timeout: float = 240) -> dict[str, list[str]]:
    """Listen to `uris` until a read of each shows its job ended; the statuses read after each update."""
    seen: dict[str, list[str]] = {uri: [] for uri in uris}
    with anyio.fail_after(timeout):
        async with client.listen(resource_subscriptions=uris) as subscription:
            assert sorted(subscription.honored.resource_subscriptions or []) == sorted(uris)
            async for event in subscription:
                uri = getattr(event, "uri", "")
                seen[uri].append((await read_json(client, uri))["status"])
                if all(statuses and statuses[-1] in ENDED for statuses in seen.values()):
                    return seen
    raise AssertionError(f"the stream ended first: {seen}")


async def test_http_tool_results_are_readable_text_with_structured_content(live: LiveServer) -> None:
    async with over_http(live) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        chat = await client.call_tool("chat", {"model": CHAT_MODEL, "messages": HELLO, "max_tokens": 8})
        keys = await client.call_tool("list_keys", {})
        version = client.protocol_version
    assert version == "2026-07-28"
    assert tools["chat"].output_schema is not None
    assert tools["revoke_key"].annotations is not None
    assert tools["revoke_key"].annotations.destructive_hint
    answer = structured(chat)["choices"][0]["message"]["content"]
    assert text_of(chat) == answer
    assert structured(keys)["result"][0]["key_prefix"] in text_of(keys)


async def test_http_prompts_and_completions(live: LiveServer) -> None:
    other_key = create_user(live.env)
    async with over_http(live) as client:
        registered = await client.call_tool(
            "register_prompt_version", {"registry_id": "live-support", "template": "Answer in {{language}}."}
        )
        version = structured(registered)["version_id"]
        names = {p.name: p for p in (await client.list_prompts()).prompts}
        rendered = await client.get_prompt(version, {"language": "French"})
        models = await client.complete(
            ResourceTemplateReference(type="ref/resource", uri="batchin://models/{model_id}"),
            {"name": "model_id", "value": "smollm"},
        )
        prompt_names = await client.complete(
            ResourceTemplateReference(type="ref/resource", uri="batchin://prompts/{name}"),
            {"name": "name", "value": "live-"},
        )
    async with over_http(live, other_key) as client:
        others = (await client.list_prompts()).prompts
    assert [a.name for a in names[version].arguments or []] == ["language"]
    assert "live-support@promoted" in names
    [message] = rendered.messages
    assert isinstance(message.content, TextContent)
    assert message.content.text == "Answer in French."
    assert models.completion.values == [CHAT_MODEL]
    assert sorted(prompt_names.completion.values) == sorted([version, "live-support@promoted"])
    assert others == []


async def test_http_listen_follows_a_batch_and_a_video_job_to_their_end(live: LiveServer) -> None:
    tasks = [
        {"custom_id": f"t{i}", "model": CHAT_MODEL, "request_body": {"messages": HELLO, "max_tokens": 4}}
        for i in range(2)
    ]
    video_job = {"model": VIDEO_MODEL, "prompt": "waves", "seconds": 1, "size": "64x64"}
    async with over_http(live) as client:
        batch = structured(await client.call_tool("submit_batch", {"tasks": tasks, "priority": "high"}))
        video = structured(await client.call_tool("create_video", video_job))
        batch_ids = await client.complete(
            ResourceTemplateReference(type="ref/resource", uri="batchin://batches/{batch_id}"),
            {"name": "batch_id", "value": batch["id"][:8]},
        )
        batch_uri, video_uri = f"batchin://batches/{batch['id']}", f"batchin://videos/{video['id']}"
        seen = await follow(client, [batch_uri, video_uri])
    assert batch_ids.completion.values == [batch["id"]]
    assert seen[batch_uri][-1] == "completed"
    assert seen[video_uri][-1] == "completed"


async def test_http_listen_is_refused_for_another_callers_batch(live: LiveServer) -> None:
    task = {"custom_id": "a", "model": CHAT_MODEL, "request_body": {"messages": HELLO, "max_tokens": 2}}
    async with over_http(live) as client:
        batch = structured(await client.call_tool("submit_batch", {"tasks": [task]}))
    async with over_http(live, create_user(live.env)) as client:
        with pytest.raises(MCPError, match="not_found"):
            async with client.listen(resource_subscriptions=[f"batchin://batches/{batch['id']}"]):
                pass


@pytest.mark.filterwarnings("ignore:resources/(un)?subscribe is removed")
async def test_http_2025_subscribe_is_refused_with_a_pointer_to_listen(live: LiveServer) -> None:
    async with over_http(live, mode="legacy") as client:
        with pytest.raises(MCPError, match="subscriptions/listen"):
            await client.subscribe_resource("batchin://batches/00000000-0000-0000-0000-000000000000")


async def test_stdio_prompts_completions_and_listen(live: LiveServer) -> None:
    task = {"custom_id": "a", "model": CHAT_MODEL, "request_body": {"messages": HELLO, "max_tokens": 4}}
    async with over_stdio(live, live.api_key) as client:
        await client.call_tool(
            "register_prompt_version", {"registry_id": "stdio-notes", "template": "Be terse."}
        )
        names = [p.name for p in (await client.list_prompts()).prompts]
        models = await client.complete(
            ResourceTemplateReference(type="ref/resource", uri="batchin://models/{model_id}"),
            {"name": "model_id", "value": "smollm"},
        )
        batch = structured(await client.call_tool("submit_batch", {"tasks": [task], "priority": "high"}))
        uri = f"batchin://batches/{batch['id']}"
        seen = await follow(client, [uri])
    assert "stdio-notes@v1" in names
    assert models.completion.values == [CHAT_MODEL]
    assert seen[uri][-1] == "completed"


@pytest.mark.filterwarnings("ignore:resources/(un)?subscribe is removed")
async def test_stdio_2025_session_subscribes_like_a_desktop_client(live: LiveServer) -> None:
    updates: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            updates.append(message.params.uri)

    task = {"custom_id": "a", "model": CHAT_MODEL, "request_body": {"messages": HELLO, "max_tokens": 4}}
    async with over_stdio(live, live.api_key, mode="legacy", message_handler=on_message) as client:
        batch = structured(await client.call_tool("submit_batch", {"tasks": [task], "priority": "high"}))
        uri = f"batchin://batches/{batch['id']}"
        await client.subscribe_resource(uri)
        with anyio.fail_after(120):
            while not updates or (await read_json(client, uri))["status"] not in ENDED:
                await anyio.sleep(0.2)
        await client.unsubscribe_resource(uri)
        version = client.protocol_version
    assert set(updates) == {uri}
    assert version != "2026-07-28"
