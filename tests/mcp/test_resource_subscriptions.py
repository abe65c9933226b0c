"""Resource subscriptions over FastMCP's in-memory client, on scripted models with the batch worker
running: `subscriptions/listen` (2026-07-28) and `resources/subscribe` (2025 sessions) report a
batch's progress as `notifications/resources/updated`, only for the caller's own batches and with
the `batches` scope, and their watches end with the subscription or the connection."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import pytest
from fastmcp import Client
from mcp.client.subscriptions import listen
from mcp.shared.exceptions import MCPError
from mcp.types import ResourceUpdatedNotification

from batchin.config import Settings
from batchin.errors import NotFound
from batchin.mcp_server import subscriptions
from batchin.mcp_server.runtime import McpRuntime
from batchin.mcp_server.server import build_mcp_server
from batchin.mcp_server.subscriptions import WATCH_TASK_PREFIX
from batchin.protocol.accounts import KeyCreateRequest
from batchin.protocol.batches import TERMINAL_STATUSES
from batchin.resources.watches import State, Watch
from batchin.services import Services
from tests.conftest import MakeUser
from tests.text_fixtures import eventually, scripted_services

SLOW_MODEL = "scripted-long"  # 30 tokens, 20 ms apart: a task lasts about 0.6 s


def tasks(n: int) -> list[dict[str, Any]]:
    body = {"messages": [{"role": "user", "content": "Hi"}]}
    return [{"custom_id": f"t{i}", "model": SLOW_MODEL, "request_body": body} for i in range(n)]


Connect = Callable[..., AbstractAsyncContextManager[Client[Any]]]


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with scripted_services(settings) as built:
        await built.batches.start()
        try:
            yield built
        finally:
            await built.batches.stop()


@pytest.fixture
def connect(services: Services) -> Connect:
    """A client acting with `api_key`, its server reading subscribed rows every 50 ms."""

    @asynccontextmanager
    async def open_client(api_key: str, **options: Any) -> AsyncIterator[Client[Any]]:
        runtime = McpRuntime(services=services, local_api_key=api_key, watch_interval_seconds=0.05)
        async with Client(build_mcp_server(runtime), **options) as client:
            yield client

    return open_client


def watch_tasks() -> list[str]:
    return [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith(WATCH_TASK_PREFIX)]


async def submit(client: Client[Any], n: int = 3) -> str:
    result = await client.call_tool("submit_batch", {"tasks": tasks(n), "priority": "high"})
    batch_id: str = (result.structured_content or {})["id"]
    return batch_id


async def status_of(client: Client[Any], uri: str) -> str:
    status: str = json.loads((await client.read_resource(uri))[0].text)["status"]  # type: ignore[union-attr]
    return status


async def test_listen_reports_batches_and_leaving_ends_the_watches(
    connect: Connect, make_user: MakeUser, services: Services
) -> None:
    user = await make_user()
    async with connect(user.api_key) as client:
        uri = f"batchin://batches/{await submit(client)}"
        long_batch = await submit(client, n=30)  # about 18 s of work: it outlives the stream
        long_uri = f"batchin://batches/{long_batch}"
        updates: list[str] = []
        statuses: list[str] = []
        with anyio.fail_after(30):
            async with listen(client.session, resource_subscriptions=[uri, long_uri]) as subscription:
                assert subscription.honored.resource_subscriptions == [uri, long_uri]
                async for event in subscription:
                    updates.append(getattr(event, "uri", ""))
                    if updates[-1] == uri:
                        statuses.append(await status_of(client, uri))
                        if statuses[-1] in TERMINAL_STATUSES:
                            break
        await eventually(lambda: not watch_tasks())  # leaving the stream ends its watches
        assert (await services.batches.progress(user.id, long_batch)).status not in TERMINAL_STATUSES
    assert set(updates) <= {uri, long_uri}
    assert statuses[-1] == "completed"
    assert len(statuses) >= 2  # progress while it ran, then its end


async def test_listen_is_refused_for_another_callers_batch_and_without_the_scope(
    connect: Connect, make_user: MakeUser, services: Services
) -> None:
    owner, other = await make_user(), await make_user()
    async with connect(owner.api_key) as client:
        uri = f"batchin://batches/{await submit(client)}"
    narrow = await services.accounts.create_key(owner.id, KeyCreateRequest(scopes=["inference"]))
    async with connect(other.api_key) as client:
        with pytest.raises(MCPError, match="not_found"):
            async with listen(client.session, resource_subscriptions=[uri]):
                pass
        with pytest.raises(MCPError, match="invalid_request"):
            async with listen(client.session, resource_subscriptions=["batchin://models/scripted-chat"]):
                pass
    async with connect(narrow.key) as client:
        with pytest.raises(MCPError, match="permission_denied"):
            async with listen(client.session, resource_subscriptions=[uri]):
                pass


# The 2025 protocol's request: deprecated in the SDK, still what 2025-era desktop clients send.
@pytest.mark.filterwarnings("ignore:resources/(un)?subscribe is removed")
async def test_legacy_subscribe_notifies_and_unsubscribe_and_disconnect_end_the_watch(
    connect: Connect, make_user: MakeUser, services: Services
) -> None:
    user = await make_user()
    updated: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            updated.append(message.params.uri)

    async with connect(user.api_key, mode="legacy", message_handler=on_message) as client:
        long_batch = await submit(client, n=30)  # about 18 s of work: it outlives this connection
        first, second = f"batchin://batches/{long_batch}", f"batchin://batches/{await submit(client)}"
        await client.session.subscribe_resource(first)
        await client.session.subscribe_resource(second)
        assert sorted(watch_tasks()) == sorted(WATCH_TASK_PREFIX + uri for uri in (first, second))
        await client.session.unsubscribe_resource(second)
        await eventually(lambda: watch_tasks() == [WATCH_TASK_PREFIX + first])
        await eventually(lambda: bool(updated), timeout=10)
        assert set(updated) == {first}
    await eventually(lambda: not watch_tasks())  # the connection's end cancels what is left
    assert (await services.batches.progress(user.id, long_batch)).status not in TERMINAL_STATUSES


async def test_a_user_watches_a_bounded_number_of_resources_until_a_stream_closes(
    connect: Connect, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subscriptions, "MAX_WATCHES", 1)
    user = await make_user()
    async with connect(user.api_key) as client:
        first = f"batchin://batches/{await submit(client, n=30)}"
        second = f"batchin://batches/{await submit(client, n=30)}"
        async with listen(client.session, resource_subscriptions=[first]):
            with pytest.raises(MCPError, match="rate_limited"):
                async with listen(client.session, resource_subscriptions=[second]):
                    pass
        await eventually(lambda: not watch_tasks())
        async with listen(client.session, resource_subscriptions=[second]) as subscription:
            assert subscription.honored.resource_subscriptions == [second]


async def test_a_watch_outlives_a_failed_read_and_reports_a_vanished_job() -> None:
    uri = "batchin://videos/v1"
    reads: list[State | Exception] = [
        RuntimeError("database is locked"),  # a store hiccup: try again next time
        State(("in_progress", 40), ended=False),
        State(("in_progress", 40), ended=False),  # unchanged: nothing to report
        NotFound("No such video."),  # deleted: one last report, then the watch ends
    ]

    async def read() -> State:
        outcome = reads.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    reported: list[str] = []

    async def notify(changed: str) -> None:
        reported.append(changed)

    await Watch(uri, read, State(("queued", 0), ended=False)).run(notify, interval=0)
    assert reported == [uri, uri]
    assert reads == []
