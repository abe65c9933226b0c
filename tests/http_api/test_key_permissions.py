"""Keys that cannot escalate (issue 13), over the real ASGI app on scripted models: a key creates
or revokes no key stronger than itself, every route refuses a key without its scope, a
model-restricted key is refused other models, and the key list shows each key's spend this month."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from batchin.config import Settings
from batchin.core.batches.calls import classify
from batchin.core.billing.money import units_to_cents
from batchin.errors import PermissionDenied
from batchin.http_api.app import all_endpoints
from batchin.http_api.endpoint import Endpoint
from batchin.protocol.accounts import ALL_SCOPES
from batchin.services import Services
from tests.batch_fixtures import chat_task
from tests.conftest import MakeUser, assert_error, bearer
from tests.text_fixtures import cost_units, scripted_services

ALLOWED_MODEL = "scripted-chat"
OTHER_MODEL = "scripted-long"
HELLO = [{"role": "user", "content": "Hi"}]


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with scripted_services(settings) as built:
        yield built


async def create_key(client: httpx2.AsyncClient, key: str, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/keys", json=body, headers=bearer(key))
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


async def listed_keys(client: httpx2.AsyncClient, key: str) -> dict[str, dict[str, Any]]:
    response = await client.get("/v1/keys", headers=bearer(key))
    assert response.status_code == 200, response.text
    return {k["id"]: k for k in response.json()}


async def limited_creator(client: httpx2.AsyncClient, full_key: str) -> dict[str, Any]:
    """A key that may make keys, but only within 2 scopes, 1 model, 10 RPM and 100 cents a month."""
    return await create_key(
        client,
        full_key,
        name="limited",
        scopes=["inference", "keys:write"],
        models=[ALLOWED_MODEL],
        rate_limit_rpm=10,
        monthly_budget_cents=100,
    )


# --- what a key is made with ----------------------------------------------------------------------


async def test_the_first_key_has_every_scope_and_every_model(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    first = (await listed_keys(client, user.api_key))[user.key_id]
    assert first["scopes"] == list(ALL_SCOPES)
    assert first["models"] == []
    assert first["spent_this_month_cents"] == 0


async def test_scopes_and_models_appear_in_the_create_response_and_the_list(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    created = await create_key(
        client, user.api_key, scopes=["batches", "inference", "batches"], models=[ALLOWED_MODEL]
    )
    assert created["scopes"] == ["inference", "batches"]  # the documented order, each once
    assert created["models"] == [ALLOWED_MODEL]
    listed = (await listed_keys(client, user.api_key))[created["id"]]
    assert (listed["scopes"], listed["models"]) == (["inference", "batches"], [ALLOWED_MODEL])


async def test_a_new_key_defaults_to_its_creators_permissions_and_limits(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    creator = await limited_creator(client, user.api_key)
    child = await create_key(client, creator["key"])
    assert child["scopes"] == ["inference", "keys:write"]
    assert child["models"] == [ALLOWED_MODEL]
    assert child["rate_limit_rpm"] == 10  # the server default (600) capped at the creator's
    assert child["monthly_budget_cents"] == 100


async def test_a_key_may_create_a_weaker_key(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    creator = await limited_creator(client, user.api_key)
    child = await create_key(
        client, creator["key"], scopes=["inference"], rate_limit_rpm=5, monthly_budget_cents=50
    )
    assert (child["scopes"], child["rate_limit_rpm"], child["monthly_budget_cents"]) == (["inference"], 5, 50)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"scopes": ["inference", "keys:write", "billing"]}, "scopes"),
        ({"models": []}, "models"),
        ({"models": [ALLOWED_MODEL, OTHER_MODEL]}, "models"),
        ({"rate_limit_rpm": 11}, "rate_limit_rpm"),
        ({"rate_limit_rpm": 1_000_000}, "rate_limit_rpm"),
        ({"monthly_budget_cents": 101}, "monthly_budget_cents"),
        ({"monthly_budget_cents": None}, "monthly_budget_cents"),
    ],
    ids=["more-scopes", "every-model", "another-model", "rpm", "rpm-max", "budget", "no-budget"],
)
async def test_creating_a_stronger_key_is_refused_and_creates_nothing(
    client: httpx2.AsyncClient, make_user: MakeUser, body: dict[str, Any], param: str
) -> None:
    user = await make_user()
    creator = await limited_creator(client, user.api_key)
    before = set(await listed_keys(client, user.api_key))
    response = await client.post("/v1/keys", json=body, headers=bearer(creator["key"]))
    error = assert_error(response, 403, "permission_denied")
    assert error["param"] == param
    assert error["type"] == "permission_error"
    assert set(await listed_keys(client, user.api_key)) == before


@pytest.mark.parametrize(
    ("body", "param"),
    [({"scopes": ["root"]}, "scopes.0"), ({"scopes": "inference"}, "scopes"), ({"models": [""]}, "models.0")],
)
async def test_unknown_scopes_and_empty_model_ids_are_invalid(
    client: httpx2.AsyncClient, make_user: MakeUser, body: dict[str, Any], param: str
) -> None:
    user = await make_user()
    response = await client.post("/v1/keys", json=body, headers=bearer(user.api_key))
    assert assert_error(response, 400, "invalid_request")["param"] == param
    assert set(await listed_keys(client, user.api_key)) == {user.key_id}


# --- revoking --------------------------------------------------------------------------------------


async def test_a_key_cannot_revoke_a_stronger_key(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    creator = await limited_creator(client, user.api_key)
    response = await client.delete(f"/v1/keys/{user.key_id}", headers=bearer(creator["key"]))
    assert_error(response, 403, "permission_denied")
    assert (await listed_keys(client, user.api_key))[user.key_id]["is_active"] is True


async def test_a_key_may_revoke_a_weaker_key(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    creator = await limited_creator(client, user.api_key)
    weaker = await create_key(client, creator["key"], scopes=["inference"], rate_limit_rpm=5)
    response = await client.delete(f"/v1/keys/{weaker['id']}", headers=bearer(creator["key"]))
    assert response.status_code == 204
    assert (await listed_keys(client, user.api_key))[weaker["id"]]["is_active"] is False


# --- scopes: every authenticated route ------------------------------------------------------------


def _authenticated_routes() -> list[tuple[Endpoint, str]]:
    return [(ep, path) for ep in all_endpoints() if not ep.public for path in ep.paths]


def _concrete(path: str) -> str:
    return re.sub(r"{\w+(?::\w+)?}", lambda _: str(uuid.uuid4()), path)


@pytest.mark.parametrize(
    ("endpoint", "path"), _authenticated_routes(), ids=[f"{e.method} {p}" for e, p in _authenticated_routes()]
)
async def test_a_key_without_the_routes_scope_is_refused(
    client: httpx2.AsyncClient, make_user: MakeUser, endpoint: Endpoint, path: str
) -> None:
    user = await make_user()
    others = [s for s in ALL_SCOPES if s != endpoint.scope]
    key = await create_key(client, user.api_key, scopes=others)
    response = await client.request(
        endpoint.method,
        _concrete(path),
        json={} if endpoint.method == "POST" else None,
        headers=bearer(key["key"]),
    )
    error = assert_error(response, 403, "permission_denied")
    assert str(endpoint.scope) in error["message"]


async def test_a_key_with_only_the_inference_scope_can_chat_but_not_read_the_account(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    key = (await create_key(client, user.api_key, scopes=["inference"]))["key"]
    chat = await client.post(
        "/v1/chat/completions", json={"model": ALLOWED_MODEL, "messages": HELLO}, headers=bearer(key)
    )
    assert chat.status_code == 200, chat.text
    assert_error(await client.get("/v1/usage/summary", headers=bearer(key)), 403, "permission_denied")
    assert_error(await client.post("/v1/keys", json={}, headers=bearer(key)), 403, "permission_denied")


# --- models ----------------------------------------------------------------------------------------


async def test_a_model_restricted_key_is_refused_other_models_unbilled(
    client: httpx2.AsyncClient, make_user: MakeUser, services: Services
) -> None:
    user = await make_user()
    key = (await create_key(client, user.api_key, models=[ALLOWED_MODEL]))["key"]
    refused = await client.post(
        "/v1/chat/completions", json={"model": OTHER_MODEL, "messages": HELLO}, headers=bearer(key)
    )
    error = assert_error(refused, 403, "permission_denied")
    assert error["param"] == "model"
    assert await services.usage.list_logs(user.id) == []
    allowed = await client.post(
        "/v1/chat/completions", json={"model": ALLOWED_MODEL, "messages": HELLO}, headers=bearer(key)
    )
    assert allowed.status_code == 200, allowed.text


# --- spend -----------------------------------------------------------------------------------------


async def test_spent_this_month_is_the_cost_of_the_keys_calls(
    client: httpx2.AsyncClient, make_user: MakeUser, services: Services
) -> None:
    user = await make_user()
    spender = await create_key(client, user.api_key, monthly_budget_cents=100)
    response = await client.post(
        "/v1/chat/completions",
        json={"model": ALLOWED_MODEL, "messages": HELLO},
        headers=bearer(spender["key"]),
    )
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    expected_units = cost_units(usage["prompt_tokens"], usage["completion_tokens"])
    [log] = await services.usage.list_logs(user.id)
    assert log.cost_micro_cents == expected_units
    listed = await listed_keys(client, user.api_key)
    assert listed[spender["id"]]["spent_this_month_cents"] == units_to_cents(expected_units)
    assert listed[spender["id"]]["spent_this_month_cents"] > 0
    assert listed[user.key_id]["spent_this_month_cents"] == 0


async def test_a_key_without_a_budget_counts_its_spend_too(
    client: httpx2.AsyncClient, make_user: MakeUser, services: Services
) -> None:
    user = await make_user()
    unbudgeted = await create_key(client, user.api_key, monthly_budget_cents=None)
    assert unbudgeted["monthly_budget_cents"] is None
    for _ in range(2):
        response = await client.post(
            "/v1/chat/completions",
            json={"model": ALLOWED_MODEL, "messages": HELLO},
            headers=bearer(unbudgeted["key"]),
        )
        assert response.status_code == 200, response.text
    logged = sum(log.cost_micro_cents for log in await services.usage.list_logs(user.id))
    listed = await listed_keys(client, user.api_key)
    assert listed[unbudgeted["id"]]["spent_this_month_cents"] == units_to_cents(logged)
    assert listed[unbudgeted["id"]]["spent_this_month_cents"] > 0


async def test_a_model_restricted_key_cannot_batch_other_models(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    key = (await create_key(client, user.api_key, models=[ALLOWED_MODEL]))["key"]
    tasks = [chat_task("ok", ALLOWED_MODEL), chat_task("other", OTHER_MODEL)]
    response = await client.post("/v1/batches", json={"tasks": tasks}, headers=bearer(key))
    error = assert_error(response, 403, "permission_denied")
    assert error["param"] == "tasks[1].model"
    assert (await client.get("/v1/batches", headers=bearer(user.api_key))).json() == []


def test_a_batch_task_its_key_may_not_run_fails_at_once() -> None:
    """A file batch's tasks are checked when they run: the refusal is final, never retried."""
    verdict = classify(PermissionDenied("no", param="model"), failures=0, max_retries=5, base_delay=0.5)
    assert (verdict.final, verdict.status_code, verdict.code) == (True, 403, "permission_denied")
