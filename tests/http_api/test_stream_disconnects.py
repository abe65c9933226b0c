"""A streamed call's caller leaving, over plain ASGI: one disconnect watch serves the call's start
and its stream (http_api/disconnect.py), and whichever phase the caller leaves in, the engine's work
stops and the call is charged what was made."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import pytest

from batchin.config import Settings
from batchin.http_api.app import build_http_app
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser
from tests.text_fixtures import cost_units, eventually, logs_of, runner_of, scripted_services

MESSAGES = [{"role": "user", "content": "Say hello"}]  # 2 prompt tokens


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with scripted_services(settings) as built:
        yield built


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user()


def _scope(api_key: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {api_key}".encode()),
        ],
        "client": ("203.0.113.9", 5555),
        "server": ("testserver", 80),
    }


async def test_a_caller_that_leaves_mid_stream_stops_the_engine_and_pays_for_what_was_made(
    services: Services, user: UserCreated
) -> None:
    runner = await runner_of(services, "scripted-long")
    body = json.dumps({"model": "scripted-long", "messages": MESSAGES, "stream": True}).encode()
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await eventually(lambda: bool(runner.calls) and runner.calls[0].produced >= 2)
        return {"type": "http.disconnect"}

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    app = build_http_app()
    app.state.services = services
    await asyncio.wait_for(app(_scope(user.api_key), receive, send), timeout=10)
    assert sent[0]["status"] == 200  # the stream had started
    bodies = b"".join(m.get("body", b"") for m in sent[1:])
    assert b"[DONE]" not in bodies  # ended by the caller's leaving, not by the engine

    [call] = runner.calls
    assert call.outcome == "cancelled"
    assert call.produced < 30
    [log] = await logs_of(services, user)
    assert log.status == "cancelled"
    assert log.output_tokens == call.produced
    assert log.cost_micro_cents == cost_units(2, call.produced)
