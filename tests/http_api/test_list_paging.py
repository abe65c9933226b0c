"""Bare-array lists (/v1/batches, /v1/usage/logs, /v1/topup/history, /v1/keys) page instead of
dropping what does not fit: a full page carries `Link: <…>; rel="next"` (RFC 8288) naming the next
one, and the last page carries none."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from batchin.config import Settings
from batchin.protocol.accounts import UserCreated
from batchin.protocol.batches import BatchCreateRequest
from batchin.services import Services
from tests.batch_fixtures import batch_services, chat_task
from tests.conftest import MakeUser, bearer
from tests.http_api.test_usage import context_for, metered


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with batch_services(settings) as built:
        await built.batches.dispatcher.stop()  # listing only: no batch needs to run
        yield built


def next_link(response: httpx2.Response) -> str | None:
    """The target of the Link header's rel="next", or None."""
    header = response.headers.get("link")
    if header is None:
        return None
    target, _, params = header.partition(";")
    assert params.strip() == 'rel="next"', header
    assert (target[:1], target[-1:]) == ("<", ">"), header
    return target[1:-1]


async def walk(client: httpx2.AsyncClient, path: str, user: UserCreated) -> list[list[Any]]:
    """Every page, following the Link headers from `path`."""
    pages: list[list[Any]] = []
    following: str | None = path
    while following is not None:
        response = await client.get(following, headers=bearer(user.api_key))
        assert response.status_code == 200, response.text
        pages.append(response.json())
        following = next_link(response)
    return pages


async def submit_batches(services: Services, user: UserCreated, count: int) -> list[str]:
    ctx = await context_for(services, user)
    request = BatchCreateRequest.model_validate({"tasks": [chat_task("t")]})
    return [(await services.batches.submit(ctx, request)).id for _ in range(count)]


async def test_batches_default_to_the_newest_100_and_link_the_rest(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=100)
    created = await submit_batches(services, user, 101)

    first = await client.get("/v1/batches", headers=bearer(user.api_key))
    pages = await walk(client, "/v1/batches", user)

    assert len(first.json()) == 100
    assert next_link(first) == f"/v1/batches?limit=100&after={first.json()[-1]['id']}"
    assert [len(page) for page in pages] == [100, 1]
    assert [b["id"] for page in pages for b in page] == list(reversed(created))


async def test_a_batch_page_keeps_its_size_and_the_last_has_no_link(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=100)
    created = await submit_batches(services, user, 4)

    pages = await walk(client, "/v1/batches?limit=2", user)

    assert [[b["id"] for b in page] for page in pages] == [created[:1:-1], created[1::-1]]


async def test_usage_logs_link_the_next_offset(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    request_ids = [await metered(services, user) for _ in range(3)]

    first = await client.get("/v1/usage/logs?limit=2", headers=bearer(user.api_key))
    pages = await walk(client, "/v1/usage/logs?limit=2", user)

    assert next_link(first) == "/v1/usage/logs?limit=2&offset=2"
    assert [[log["request_id"] for log in page] for page in pages] == [request_ids[:0:-1], request_ids[:1]]


async def test_topup_history_pages(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user()  # its opening credit is the first top-up
    for cents in (100, 200, 300, 400):
        await services.topups.credit(user.id, cents)

    pages = await walk(client, "/v1/topup/history?limit=2", user)
    whole = await client.get("/v1/topup/history", headers=bearer(user.api_key))

    assert [len(page) for page in pages] == [2, 2, 1]
    assert [t["id"] for page in pages for t in page] == [t["id"] for t in whole.json()]
    assert next_link(whole) is None


async def test_keys_page(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    for name in ("second", "third"):
        made = await client.post("/v1/keys", json={"name": name}, headers=bearer(user.api_key))
        assert made.status_code == 200, made.text

    pages = await walk(client, "/v1/keys?limit=2", user)
    whole = await client.get("/v1/keys", headers=bearer(user.api_key))

    assert [len(page) for page in pages] == [2, 1]
    assert [k["id"] for page in pages for k in page] == [k["id"] for k in whole.json()]
    assert next_link(whole) is None
