"""Every inference call lands in the caller's trace view: the caller's trace id is continued,
the spans name the model and the audit record, and other tenants cannot see it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import orjson
import pytest
from starlette.applications import Starlette

from batchin.config import Settings
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser, bearer
from tests.text_fixtures import scripted_services

MODEL = "scripted-chat"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with scripted_services(settings) as built:
        yield built


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user()


async def call(client: httpx2.AsyncClient, user: UserCreated) -> httpx2.Response:
    response = await client.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        headers={**bearer(user.api_key), "traceparent": CALLER},
    )
    assert response.status_code == 200, response.text
    return response


async def test_call_is_listed_under_the_callers_trace(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await call(client, user)
    listed = await client.get("/v1/traces?limit=5", headers=bearer(user.api_key))
    assert listed.status_code == 200
    [item] = [i for i in listed.json()["items"] if i["trace_id"] == TRACE_ID]
    assert item["run_id"] == response.headers["X-BatchIn-Run-Id"]
    assert item["record_id"] == response.headers["X-VaaS-Record-Id"]
    assert item["model_id"] == MODEL
    assert item["prompt_version_id"] == "default"


async def test_trace_has_the_call_span_under_the_callers_span(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    response = await call(client, user)
    our_span = response.headers["traceparent"].split("-")[2]
    detail = await client.get(f"/v1/traces/{TRACE_ID}", headers=bearer(user.api_key))
    assert detail.status_code == 200, detail.text
    spans = {span["name"]: span for span in detail.json()["spans"]}
    assert {"batchin.call", "batchin.admission", "batchin.engine"} <= set(spans)
    assert spans["batchin.call"]["span_id"] == our_span
    assert spans["batchin.call"]["parent_span_id"] == "00f067aa0ba902b7"


async def test_another_tenant_gets_404(
    client: httpx2.AsyncClient, user: UserCreated, make_user: MakeUser
) -> None:
    await call(client, user)
    other = await make_user()
    response = await client.get(f"/v1/traces/{TRACE_ID}", headers=bearer(other.api_key))
    assert response.status_code == 404


async def test_the_call_is_traced_once_its_answer_is_sent(
    app: Starlette, services: Services, user: UserCreated, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    record = services.traces.record_generation

    def recorded(*args: Any, **kwargs: Any) -> None:
        seen.append("traced")
        record(*args, **kwargs)

    monkeypatch.setattr(services.traces, "record_generation", recorded)
    body = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        seen.append(f"{message['type']} {message.get('status', '')}".strip())

    headers = [(b"host", b"testserver"), (b"content-type", b"application/json")]
    headers.append((b"authorization", f"Bearer {user.api_key}".encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("203.0.113.9", 5555),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    # The answer waited for its receipt only; the call's trace (and metrics) follow it out.
    assert seen == ["http.response.start 200", "http.response.body", "traced"]
