"""Every OpenAI-compatible text and control-plane response we serve, validated against OpenAI's
published OpenAPI document (tests/openai_reference.py): chat, completions and responses, whole and
streamed, the model list, files and batches. Real responses of the app, on scripted models.

Where our contract differs from OpenAI on purpose, the test says so: `GET /v1/batches` is the seed's
bare array (each element is checked as OpenAI's Batch)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from batchin.config import Settings
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.batch_fixtures import CHAT, batch_services, jsonl_line, wait_for
from tests.conftest import MakeUser, bearer
from tests.openai_reference import component, response_schema, violations
from tests.text_fixtures import sse_json

MESSAGES = [{"role": "user", "content": "Say hello"}]
STREAM = "text/event-stream"
# OpenAI documents no stream for /completions: its chunks are CreateCompletionResponse objects, and
# OpenAI itself sends `finish_reason: null` in all but the last, which that schema does not allow.
# The one place where we follow OpenAI's behaviour rather than its schema.
NULL_FINISH_REASON = [
    "choices/0/finish_reason: None is not of type 'string'",
    "choices/0/finish_reason: None is not one of ['stop', 'length', 'content_filter']",
]


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with batch_services(settings) as built:
        yield built


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user()


async def post(client: httpx2.AsyncClient, user: UserCreated, path: str, **body: Any) -> httpx2.Response:
    response = await client.post(path, json=body, headers=bearer(user.api_key))
    assert response.status_code == 200, response.text
    return response


def assert_valid(instance: Any, pointer: str) -> None:
    problems = violations(instance, pointer)
    assert not problems, "\n".join([*problems, json.dumps(instance)[:2000]])


@pytest.mark.parametrize("include_usage", [False, True])
async def test_chat_completion_and_its_chunks(
    client: httpx2.AsyncClient, user: UserCreated, include_usage: bool
) -> None:
    whole = await post(client, user, "/v1/chat/completions", model=CHAT, messages=MESSAGES)
    assert_valid(whole.json(), response_schema("/chat/completions", "post"))
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    streamed = await post(
        client, user, "/v1/chat/completions", model=CHAT, messages=MESSAGES, stream=True, **options
    )
    chunks = sse_json(streamed.text)
    for chunk in chunks:
        assert_valid(chunk, response_schema("/chat/completions", "post", content=STREAM))
    assert len(chunks) == 6 + include_usage


async def test_n_choices_whole_and_streamed(client: httpx2.AsyncClient, user: UserCreated) -> None:
    whole = (await post(client, user, "/v1/chat/completions", model=CHAT, messages=MESSAGES, n=3)).json()
    assert_valid(whole, response_schema("/chat/completions", "post"))
    assert [c["index"] for c in whole["choices"]] == [0, 1, 2]
    assert {c["message"]["content"] for c in whole["choices"]} == {"Hello, world!"}
    assert whole["usage"]["completion_tokens"] == 3 * 4  # every choice's tokens are counted
    streamed = await post(
        client, user, "/v1/chat/completions", model=CHAT, messages=MESSAGES, n=2, stream=True
    )
    chunks = sse_json(streamed.text)
    for chunk in chunks:
        assert_valid(chunk, response_schema("/chat/completions", "post", content=STREAM))
    for index in (0, 1):
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == index]
        assert mine[0]["delta"] == {"role": "assistant", "content": ""}
        assert "".join(c["delta"].get("content", "") for c in mine) == "Hello, world!"
        assert [c["finish_reason"] for c in mine][-1] == "stop"
    completions = (await post(client, user, "/v1/completions", model=CHAT, prompt="Say hello", n=2)).json()
    assert_valid(completions, response_schema("/completions", "post"))
    assert [c["text"] for c in completions["choices"]] == ["Hello, world!", "Hello, world!"]


async def test_chat_role_is_sent_once_as_openai_does(client: httpx2.AsyncClient, user: UserCreated) -> None:
    streamed = await post(client, user, "/v1/chat/completions", model=CHAT, messages=MESSAGES, stream=True)
    deltas = [chunk["choices"][0]["delta"] for chunk in sse_json(streamed.text)]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1:-1] == [{"content": t} for t in ["Hello", ",", " world", "!"]]
    assert deltas[-1] == {}


@pytest.mark.parametrize("include_usage", [False, True])
async def test_completion_and_its_chunks(
    client: httpx2.AsyncClient, user: UserCreated, include_usage: bool
) -> None:
    whole = await post(client, user, "/v1/completions", model=CHAT, prompt="Say hello")
    assert_valid(whole.json(), response_schema("/completions", "post"))
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    streamed = await post(
        client, user, "/v1/completions", model=CHAT, prompt="Say hello", stream=True, **options
    )
    chunks = sse_json(streamed.text)
    for chunk in chunks[-1 - include_usage :]:
        assert_valid(chunk, response_schema("/completions", "post"))
    for chunk in chunks[: -1 - include_usage]:
        assert violations(chunk, response_schema("/completions", "post")) == NULL_FINISH_REASON
    assert len(chunks) == 5 + include_usage


async def test_response_object(client: httpx2.AsyncClient, user: UserCreated) -> None:
    body = await post(client, user, "/v1/responses", model=CHAT, input="Say hello", instructions="Be brief")
    assert_valid(body.json(), response_schema("/responses", "post"))


async def test_response_stream_events(client: httpx2.AsyncClient, user: UserCreated) -> None:
    streamed = await post(client, user, "/v1/responses", model=CHAT, input="Say hello", stream=True)
    events = sse_json(streamed.text)
    assert [e["type"] for e in events][-1] == "response.completed"
    for event in events:
        assert_valid(event, response_schema("/responses", "post", content=STREAM))


async def test_incomplete_response_and_its_final_event(client: httpx2.AsyncClient, user: UserCreated) -> None:
    whole = await post(client, user, "/v1/responses", model=CHAT, input="Say hello", max_output_tokens=2)
    assert whole.json()["status"] == "incomplete"
    assert_valid(whole.json(), response_schema("/responses", "post"))
    streamed = await post(
        client, user, "/v1/responses", model=CHAT, input="hi", max_output_tokens=2, stream=True
    )
    last = sse_json(streamed.text)[-1]
    assert last["type"] == "response.incomplete"
    assert_valid(last, response_schema("/responses", "post", content=STREAM))


async def test_models(client: httpx2.AsyncClient) -> None:
    listed = await client.get("/v1/models")
    assert_valid(listed.json(), response_schema("/models", "get"))
    one = await client.get(f"/v1/models/{CHAT}")
    assert_valid(one.json(), response_schema("/models/{model}", "get"))


async def upload(
    client: httpx2.AsyncClient, user: UserCreated, lines: list[dict[str, Any]]
) -> dict[str, Any]:
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    response = await client.post(
        "/v1/files",
        files={"file": ("input.jsonl", data, "application/jsonl")},
        data={"purpose": "batch"},
        headers=bearer(user.api_key),
    )
    assert response.status_code == 200, response.text
    file: dict[str, Any] = response.json()
    return file


async def test_uploaded_file(client: httpx2.AsyncClient, user: UserCreated) -> None:
    created = await upload(client, user, [jsonl_line("a")])
    assert_valid(created, response_schema("/files", "post"))
    fetched = await client.get(f"/v1/files/{created['id']}", headers=bearer(user.api_key))
    assert_valid(fetched.json(), response_schema("/files/{file_id}", "get"))
    assert isinstance(fetched.json()["expires_at"], int)  # the file retention
    deleted = await client.delete(f"/v1/files/{created['id']}", headers=bearer(user.api_key))
    assert_valid(deleted.json(), response_schema("/files/{file_id}", "delete"))


async def test_batches_from_creation_to_output(
    services: Services, client: httpx2.AsyncClient, user: UserCreated
) -> None:
    file = await upload(client, user, [jsonl_line("a"), jsonl_line("b")])
    body = {"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    created = await post(client, user, "/v1/batches", **body)
    assert_valid(created.json(), response_schema("/batches", "post"))
    done = await wait_for(services, user, created.json()["id"])
    assert done.status == "completed"
    fetched = await client.get(f"/v1/batches/{done.id}", headers=bearer(user.api_key))
    assert_valid(fetched.json(), response_schema("/batches/{batch_id}", "get"))
    output = await client.get(f"/v1/files/{done.output_file_id}", headers=bearer(user.api_key))
    assert_valid(output.json(), response_schema("/files/{file_id}", "get"))
    listed = await client.get("/v1/batches", headers=bearer(user.api_key))
    for batch in listed.json():  # the seed's bare array, not OpenAI's list object
        assert_valid(batch, component("Batch"))


async def test_cancelled_batch(client: httpx2.AsyncClient, user: UserCreated, services: Services) -> None:
    await services.batches.stop()  # no task starts: the batch is cancelling until its supervisor runs
    file = await upload(client, user, [jsonl_line("a")])
    body = {"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    created = await post(client, user, "/v1/batches", **body)
    cancelled = await post(client, user, f"/v1/batches/{created.json()['id']}/cancel")
    assert cancelled.json()["status"] in ("cancelling", "cancelled")
    assert_valid(cancelled.json(), response_schema("/batches/{batch_id}/cancel", "post"))
