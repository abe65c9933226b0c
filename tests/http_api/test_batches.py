"""/v1/batches through the real ASGI app: the seed's inline form and its shapes, the bare-array
list, errors (401, 404 for another tenant's batch, 400 naming the field, 413 over 2 MB), paging,
cancel, webhook events; and the openai SDK driving OpenAI's file form."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from sqlalchemy import select

from batchin.config import Settings
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from batchin.store.tables import batches, webhook_deliveries
from tests.batch_fixtures import CHAT, TEXT, WIDE, batch_services, chat_task, jsonl_line
from tests.conftest import MakeUser, assert_error, bearer
from tests.media_fixtures import sdk_client
from tests.text_fixtures import runner_of

HOOK = "http://127.0.0.1:9/hooks/batchin"


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with batch_services(settings, webhook_allowed_hosts=["127.0.0.1"]) as built:
        yield built


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user(credit_cents=100)


async def create(client: httpx2.AsyncClient, user: UserCreated, body: dict[str, Any]) -> httpx2.Response:
    return await client.post("/v1/batches", json=body, headers=bearer(user.api_key))


async def finished(client: httpx2.AsyncClient, user: UserCreated, batch_id: str) -> dict[str, Any]:
    for _ in range(1500):
        response = await client.get(f"/v1/batches/{batch_id}", headers=bearer(user.api_key))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] in ("completed", "failed", "expired", "cancelled"):
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"batch {batch_id} did not finish")


async def loading(services: Services, batch_id: str) -> bool:
    """Whether a process still holds the batch (loading its input file)."""
    async with services.database.read() as conn:
        row = (
            await conn.execute(select(batches.c.status, batches.c.claimed_by).where(batches.c.id == batch_id))
        ).one()
    return row.status == "validating" or row.claimed_by is not None


async def test_the_seed_form_creates_a_pending_batch(client: httpx2.AsyncClient, user: UserCreated) -> None:
    body = {
        "priority": "fill",
        "webhook_url": HOOK,
        "tasks": [chat_task("task-1", CHAT), chat_task("task-2", WIDE)],
    }

    response = await create(client, user, body)

    assert response.status_code == 200, response.text
    created = response.json()
    assert uuid.UUID(created["id"])
    assert {
        k: created[k] for k in ("status", "priority", "total_tasks", "completed_tasks", "failed_tasks")
    } == {
        "status": "pending",
        "priority": "fill",
        "total_tasks": 2,
        "completed_tasks": 0,
        "failed_tasks": 0,
    }
    assert created["object"] == "batch"
    assert created["request_counts"] == {"total": 2, "completed": 0, "failed": 0}
    assert created["webhook_url"] == HOOK


async def test_a_batch_shows_each_tasks_status_and_result(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    created = (await create(client, user, {"tasks": [chat_task("task-1"), chat_task("task-2")]})).json()

    done = await finished(client, user, created["id"])

    assert done["status"] == "completed"
    assert [(t["custom_id"], t["status"]) for t in done["tasks"]] == [
        ("task-1", "completed"),
        ("task-2", "completed"),
    ]
    assert done["tasks"][0]["result"]["choices"][0]["message"]["content"] == TEXT
    assert (done["completed_tasks"], done["failed_tasks"]) == (2, 0)


async def test_batches_are_listed_newest_first_as_a_bare_array(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    first = (await create(client, user, {"tasks": [chat_task("a")]})).json()
    second = (await create(client, user, {"tasks": [chat_task("b")]})).json()

    listed = await client.get("/v1/batches", headers=bearer(user.api_key))
    page = await client.get(f"/v1/batches?limit=1&after={second['id']}", headers=bearer(user.api_key))

    assert listed.status_code == 200
    assert [b["id"] for b in listed.json()] == [second["id"], first["id"]]
    assert [b["id"] for b in page.json()] == [first["id"]]


async def test_a_task_page_follows_input_order(client: httpx2.AsyncClient, user: UserCreated) -> None:
    created = (await create(client, user, {"tasks": [chat_task(f"t{i}") for i in range(3)]})).json()
    await finished(client, user, created["id"])

    page = await client.get(f"/v1/batches/{created['id']}/tasks?limit=2", headers=bearer(user.api_key))

    assert page.status_code == 200
    assert [t["custom_id"] for t in page.json()["data"]] == ["t0", "t1"]
    assert (page.json()["last_line"], page.json()["has_more"]) == (1, True)


async def test_cancel_answers_with_the_batch(
    client: httpx2.AsyncClient, services: Services, user: UserCreated
) -> None:
    await services.batches.dispatcher.stop()  # nothing starts: the cancel ends the batch at once
    created = (await create(client, user, {"tasks": [chat_task("t")]})).json()

    response = await client.post(f"/v1/batches/{created['id']}/cancel", headers=bearer(user.api_key))

    assert response.status_code == 200, response.text
    assert (response.json()["id"], response.json()["status"]) == (created["id"], "cancelled")
    again = await client.post(f"/v1/batches/{created['id']}/cancel", headers=bearer(user.api_key))
    assert_error(again, 400, "invalid_request")


async def test_a_finished_batch_queues_one_webhook_event(
    client: httpx2.AsyncClient, services: Services, user: UserCreated
) -> None:
    created = (await create(client, user, {"webhook_url": HOOK, "tasks": [chat_task("t")]})).json()

    done = await finished(client, user, created["id"])

    async with services.database.read() as conn:
        query = select(webhook_deliveries).where(webhook_deliveries.c.subject_id == created["id"])
        events = (await conn.execute(query)).all()
    assert [(e.event_type, e.url, e.user_id) for e in events] == [("batch.completed", HOOK, user.id)]
    payload = json.loads(events[0].payload)
    assert (payload["type"], payload["data"]["id"], payload["data"]["status"]) == (
        "batch.completed",
        created["id"],
        "completed",
    )
    assert done["webhook_deliveries"] == []  # the delivery worker is not running in this test


async def test_a_webhook_url_to_a_private_address_is_refused(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    body = {"webhook_url": "http://169.254.169.254/latest/meta-data", "tasks": [chat_task("t")]}

    error = assert_error(await create(client, user, body), 400, "invalid_request")

    assert error["param"] == "webhook_url"
    assert (await client.get("/v1/batches", headers=bearer(user.api_key))).json() == []


# --- errors ----------------------------------------------------------------------------------------


async def test_a_batch_needs_a_key(client: httpx2.AsyncClient) -> None:
    assert_error(await client.post("/v1/batches", json={"tasks": [chat_task("t")]}), 401, "unauthorized")
    assert_error(await client.get("/v1/batches"), 401, "unauthorized")


async def test_another_tenants_batch_is_not_found(
    client: httpx2.AsyncClient, user: UserCreated, make_user: MakeUser
) -> None:
    created = (await create(client, user, {"tasks": [chat_task("t")]})).json()
    stranger = bearer((await make_user()).api_key)

    for response in (
        await client.get(f"/v1/batches/{created['id']}", headers=stranger),
        await client.post(f"/v1/batches/{created['id']}/cancel", headers=stranger),
        await client.get(f"/v1/batches/{created['id']}/tasks", headers=stranger),
        await client.get(f"/v1/batches/{uuid.uuid4()}", headers=bearer(user.api_key)),
    ):
        assert_error(response, 404, "not_found")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tasks": [chat_task("t", "no-such-model")]}, "tasks[0].model"),
        ({"tasks": []}, None),
        ({"tasks": [chat_task("t")], "input_file_id": "file-x", "endpoint": "/v1/chat/completions"}, None),
        ({"input_file_id": "file-x"}, None),
        ({"tasks": [chat_task("t")], "priority": "urgent"}, "priority"),
        ({"tasks": [chat_task("t")], "completion_window": "forever"}, "completion_window"),
    ],
    ids=["unknown-model", "no-tasks", "both-forms", "file-without-endpoint", "bad-priority", "bad-window"],
)
async def test_an_invalid_batch_is_refused_naming_the_field(
    client: httpx2.AsyncClient, user: UserCreated, body: dict[str, Any], param: str | None
) -> None:
    error = assert_error(await create(client, user, body), 400, "invalid_request")
    assert error["param"] == param


async def test_a_json_body_over_2_mb_is_payload_too_large(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    big = {"tasks": [chat_task(f"t{i}", content="x" * 1000) for i in range(2100)]}
    data = json.dumps(big).encode()
    assert len(data) > 2 * 1024 * 1024

    declared = await client.post("/v1/batches", content=data, headers=bearer(user.api_key))

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams in
        for start in range(0, len(data), 65536):
            yield data[start : start + 65536]

    streamed = await client.post("/v1/batches", content=chunks(), headers=bearer(user.api_key))
    assert_error(declared, 413, "payload_too_large")
    assert_error(streamed, 413, "payload_too_large")


# --- the openai SDK, file form ---------------------------------------------------------------------


async def test_the_openai_sdk_runs_a_file_batch(services: Services, user: UserCreated) -> None:
    lines = [jsonl_line(f"request-{i}") for i in range(4)]
    data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)

    async with sdk_client(services, user.api_key) as sdk:
        uploaded = await sdk.files.create(file=("requests.jsonl", data), purpose="batch")
        batch = await sdk.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"run": "1"},
        )
        while batch.status not in ("completed", "failed", "expired", "cancelled"):
            await asyncio.sleep(0.02)
            batch = await sdk.batches.retrieve(batch.id)
        assert batch.output_file_id is not None
        output = await sdk.files.content(batch.output_file_id)
        stored = await sdk.files.retrieve(uploaded.id)

    assert (uploaded.purpose, uploaded.bytes, stored.filename) == ("batch", len(data), "requests.jsonl")
    assert batch.status == "completed"
    assert batch.metadata == {"run": "1"}
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (
        4,
        4,
        0,
    )
    results = [json.loads(line) for line in output.text.splitlines()]
    assert [r["custom_id"] for r in results] == [f"request-{i}" for i in range(4)]
    assert {r["response"]["body"]["choices"][0]["message"]["content"] for r in results} == {TEXT}


async def test_cancelling_a_loaded_file_batch_with_nothing_running_answers_cancelled(
    services: Services, user: UserCreated
) -> None:
    await services.batches.dispatcher.stop()  # its tasks are loaded but none starts
    data = b"".join(json.dumps(jsonl_line(f"r{i}")).encode() + b"\n" for i in range(2))
    async with sdk_client(services, user.api_key) as sdk:
        uploaded = await sdk.files.create(file=("requests.jsonl", data), purpose="batch")
        batch = await sdk.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        while await loading(services, batch.id):
            await asyncio.sleep(0.02)
        batch = await sdk.batches.retrieve(batch.id)
        assert (batch.status, batch.request_counts and batch.request_counts.total) == ("in_progress", 2)
        cancelled = await sdk.batches.cancel(batch.id)
        assert cancelled.error_file_id is not None
        errors = await sdk.files.content(cancelled.error_file_id)

    assert cancelled.status == "cancelled"  # at once: no task was running
    assert [json.loads(line)["error"]["code"] for line in errors.text.splitlines()] == ["batch_cancelled"] * 2


async def test_the_openai_sdk_cancels_a_file_batch(services: Services, user: UserCreated) -> None:
    runner = await runner_of(services, CHAT)
    runner.gate = asyncio.Event()
    data = b"".join(json.dumps(jsonl_line(f"r{i}")).encode() + b"\n" for i in range(3))

    async with sdk_client(services, user.api_key) as sdk:
        uploaded = await sdk.files.create(file=("requests.jsonl", data), purpose="batch")
        batch = await sdk.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        while not runner.calls:
            await asyncio.sleep(0.01)
        cancelling = await sdk.batches.cancel(batch.id)
        runner.gate.set()
        while batch.status != "cancelled":
            await asyncio.sleep(0.02)
            batch = await sdk.batches.retrieve(batch.id)
        assert batch.error_file_id is not None
        errors = await sdk.files.content(batch.error_file_id)

    assert cancelling.status == "cancelling"
    assert batch.request_counts is not None
    assert batch.request_counts.completed == 1
    assert [json.loads(line)["error"]["code"] for line in errors.text.splitlines()] == ["batch_cancelled"] * 2
