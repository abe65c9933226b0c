"""The inference routes served past Starlette's layers (http_api/hot_routes.py) answer exactly as
they do through Starlette's middleware and router: same statuses, header names in the same order,
same error bodies, a request id on everything, the 500 path for an unexpected failure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette

from batchin.app import create_app
from batchin.config import Settings
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser, bearer
from tests.text_fixtures import scripted_services

MESSAGES = [{"role": "user", "content": "Say hello"}]
# Values that differ per call by design (ids, signatures, the date, the key's remaining calls).
_PER_CALL = {"x-request-id", "traceparent", "x-batchin-run-id", "date", "content-length"}
_PER_CALL |= {"x-ratelimit-remaining", "x-ratelimit-reset"}  # the same key, calls apart


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with scripted_services(settings) as built:
        yield built


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user()


def _app(services: Services, *, hot: bool) -> Starlette:
    app = create_app(services.settings, services)
    if not hot:
        app.hot_routes = None  # type: ignore[attr-defined]  # every request through Starlette
    return app


def _shape(response: httpx2.Response) -> tuple[Any, ...]:
    headers = [
        (name, "" if name in _PER_CALL or name.startswith("x-vaas-") else value)
        for name, value in response.headers.items()
    ]
    if response.headers.get("content-type", "").startswith("application/json"):
        body: Any = response.json()
        if response.status_code == 200:
            body = sorted(body)  # ids and times differ per call: the keys must not
    else:
        body = [line.split(":", 1)[0] for line in response.text.splitlines()]
    return response.status_code, headers, body


async def _requests(client: httpx2.AsyncClient, user: UserCreated) -> list[tuple[Any, ...]]:
    auth = bearer(user.api_key)
    chat = {"model": "scripted-chat", "messages": MESSAGES}
    sent = [
        await client.post("/v1/chat/completions", json=chat, headers=auth),
        await client.post("/v1/chat/completions", json={**chat, "stream": True}, headers=auth),
        await client.post("/v1/completions", json={"model": "scripted-chat", "prompt": "Hi"}, headers=auth),
        await client.post("/v1/responses", json={"model": "scripted-chat", "input": "Hi"}, headers=auth),
        await client.post("/v1/chat/completions", json=chat),  # 401
        await client.post("/v1/chat/completions", content=b"{not json", headers=auth),  # 400
        await client.post("/v1/chat/completions", json={**chat, "model": "nope"}, headers=auth),  # 404
        await client.post("/v1/embeddings", json={"model": "nope", "input": "x"}, headers=auth),  # 404
    ]
    for response in sent:
        assert response.headers["x-request-id"].startswith("req_")
    return [_shape(r) for r in sent]


async def test_hot_routes_answer_as_starlette_does(services: Services, user: UserCreated) -> None:
    shapes = {}
    for hot in (True, False):
        transport = httpx2.ASGITransport(app=_app(services, hot=hot))
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
            shapes[hot] = await _requests(client, user)
    assert [s[0] for s in shapes[True]] == [200, 200, 200, 200, 401, 400, 404, 404]
    assert shapes[True] == shapes[False]


async def test_an_unexpected_failure_on_a_hot_route_is_the_500_envelope(
    services: Services, user: UserCreated, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def crash(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(services.inference, "start_chat", crash)
    transport = httpx2.ASGITransport(app=_app(services, hot=True), raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        body = {"model": "scripted-chat", "messages": MESSAGES}
        response = await client.post("/v1/chat/completions", json=body, headers=bearer(user.api_key))
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "secret" not in response.text
    assert response.headers["x-request-id"].startswith("req_")
    # The app raises it again after answering, for the server to log (as Starlette's layer does).
    transport = httpx2.ASGITransport(app=_app(services, hot=True))
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        with pytest.raises(RuntimeError, match="secret internal detail"):
            await client.post("/v1/chat/completions", json=body, headers=bearer(user.api_key))
