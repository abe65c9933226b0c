"""Catalog aliases over the real ASGI app on scripted models: each alias is its own /v1/models
entry, callable as `model` on every text endpoint and in batches; usage and responses name the
model that served; a key's model list accepts any public id of a model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from batchin.config import Settings
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.batch_fixtures import chat_task
from tests.conftest import MakeUser, assert_error, bearer
from tests.text_fixtures import CATALOG, logs_of, scripted_services

MODEL = "scripted-chat"
ALIASES = ("qwen3-32b", "house-chat")
HELLO = [{"role": "user", "content": "Say hello"}]

ALIASED_CATALOG = CATALOG.replace(
    "[models.scripted-chat]\n", f"[models.scripted-chat]\naliases = {list(ALIASES)!r}\n".replace("'", '"'), 1
)


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with scripted_services(settings, catalog=ALIASED_CATALOG) as built:
        yield built


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user()


async def post(client: httpx2.AsyncClient, key: str, path: str, body: dict[str, Any]) -> httpx2.Response:
    return await client.post(path, json=body, headers=bearer(key))


async def test_each_alias_is_listed_as_its_own_model(client: httpx2.AsyncClient) -> None:
    cards = {card["id"]: card for card in (await client.get("/v1/models")).json()["data"]}
    assert cards[MODEL]["alias_of"] is None
    for alias in ALIASES:
        assert cards[alias]["alias_of"] == MODEL
        assert cards[alias]["object"] == "model"
        assert cards[alias]["pricing"] == cards[MODEL]["pricing"]
        assert cards[alias]["kind"] == cards[MODEL]["kind"]


async def test_an_alias_is_found_by_id(client: httpx2.AsyncClient) -> None:
    response = await client.get(f"/v1/models/{ALIASES[0]}")
    assert response.status_code == 200, response.text
    assert (response.json()["id"], response.json()["alias_of"]) == (ALIASES[0], MODEL)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": HELLO, "max_tokens": 4}),
        ("/v1/completions", {"prompt": "Say hello", "max_tokens": 4}),
        ("/v1/responses", {"input": "Say hello", "max_output_tokens": 4}),
    ],
)
async def test_an_alias_is_callable_and_the_serving_model_is_named(
    client: httpx2.AsyncClient, services: Services, user: UserCreated, path: str, body: dict[str, Any]
) -> None:
    response = await post(client, user.api_key, path, {**body, "model": ALIASES[0]})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == MODEL
    assert [log.model for log in await logs_of(services, user)] == [MODEL]


async def test_a_batch_task_may_name_an_alias(client: httpx2.AsyncClient, user: UserCreated) -> None:
    key = await key_for(client, user, [MODEL])
    response = await post(client, key, "/v1/batches", {"tasks": [chat_task("a", ALIASES[1])]})
    assert response.status_code == 200, response.text


async def key_for(client: httpx2.AsyncClient, user: UserCreated, models: list[str]) -> str:
    response = await post(client, user.api_key, "/v1/keys", {"name": "k", "models": models})
    assert response.status_code == 200, response.text
    return str(response.json()["key"])


@pytest.mark.parametrize("listed", [MODEL, ALIASES[0]])
@pytest.mark.parametrize("called", [MODEL, *ALIASES])
async def test_a_key_listing_any_name_of_a_model_may_call_it_by_each(
    client: httpx2.AsyncClient, user: UserCreated, listed: str, called: str
) -> None:
    key = await key_for(client, user, [listed])
    response = await post(
        client, key, "/v1/chat/completions", {"model": called, "messages": HELLO, "max_tokens": 2}
    )
    assert response.status_code == 200, response.text


async def test_a_key_for_another_model_may_not_call_an_alias(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    key = await key_for(client, user, ["scripted-long"])
    body = {"model": ALIASES[0], "messages": HELLO, "max_tokens": 2}
    error = assert_error(await post(client, key, "/v1/chat/completions", body), 403, "permission_denied")
    assert ALIASES[0] in error["message"]
