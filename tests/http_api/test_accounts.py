"""/v1/users/me and /v1/keys over the real ASGI app: shapes, secrets shown once, revocation,
validation, tenant isolation and the per-key RPM limit."""

from __future__ import annotations

import hashlib
import uuid

import httpx2
import pytest

from batchin.services import Services
from tests.conftest import MakeUser, assert_error, bearer

# The seed's fields plus the key's permissions and regions (issue 13).
KEY_FIELDS = {
    "id",
    "key",
    "key_prefix",
    "name",
    "rate_limit_rpm",
    "monthly_budget_cents",
    "currency",
    "scopes",
    "models",
    "regions",
    "created_at",
}


async def create_key(client: httpx2.AsyncClient, key: str, **body: object) -> dict[str, object]:
    response = await client.post("/v1/keys", json=body, headers=bearer(key))
    assert response.status_code == 200, response.text
    created: dict[str, object] = response.json()
    return created


async def key_ids(client: httpx2.AsyncClient, key: str) -> list[str]:
    response = await client.get("/v1/keys", headers=bearer(key))
    assert response.status_code == 200, response.text
    return [k["id"] for k in response.json()]


# --- /v1/users/me ---------------------------------------------------------------------------------


async def test_me_returns_the_seed_shape(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user(credit_cents=10_000, email="hello@luminapath.ai", name="BatchIn Team")
    response = await client.get("/v1/users/me", headers=bearer(user.api_key))
    assert response.status_code == 200
    assert response.json() == {
        "id": user.id,
        "email": "hello@luminapath.ai",
        "name": "BatchIn Team",
        "credit_balance_cents": 10_000,
        "currency": "USD",
    }


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer   "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not-a-batchin-key"},
        {"Authorization": "Bearer batchin_api_" + "x" * 43},
    ],
    ids=["missing", "empty", "no-token", "blank-token", "basic", "malformed", "unknown"],
)
async def test_me_refuses_a_missing_malformed_or_unknown_key(
    client: httpx2.AsyncClient, headers: dict[str, str]
) -> None:
    error = assert_error(await client.get("/v1/users/me", headers=headers), 401, "unauthorized")
    assert error["type"] == "authentication_error"
    assert error["param"] is None


# --- creating and listing keys ---------------------------------------------------------------------


async def test_create_key_returns_the_seed_shape_with_the_secret(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    created = await create_key(
        client, user.api_key, name="Production Key", rate_limit_rpm=120, monthly_budget_cents=500_000
    )
    assert set(created) == KEY_FIELDS
    uuid.UUID(str(created["id"]))
    secret = str(created["key"])
    assert secret.startswith("batchin_api_")
    assert len(secret) > 40
    assert secret.startswith(str(created["key_prefix"]))
    assert created["name"] == "Production Key"
    assert created["rate_limit_rpm"] == 120
    assert created["monthly_budget_cents"] == 500_000
    assert str(created["created_at"]).endswith("Z")


async def test_create_key_without_a_body_uses_defaults(
    client: httpx2.AsyncClient, make_user: MakeUser, services: Services
) -> None:
    user = await make_user()
    response = await client.post("/v1/keys", headers=bearer(user.api_key))
    assert response.status_code == 200, response.text
    created = response.json()
    assert created["rate_limit_rpm"] == services.settings.default_rate_limit_rpm
    assert created["monthly_budget_cents"] is None
    assert created["name"] == "API key"


async def test_new_key_authenticates_as_its_user(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    created = await create_key(client, user.api_key, name="second")
    response = await client.get("/v1/users/me", headers=bearer(str(created["key"])))
    assert response.status_code == 200
    assert response.json()["id"] == user.id


async def test_key_list_never_shows_a_secret_or_its_hash(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    created = await create_key(client, user.api_key, name="Production Key", rate_limit_rpm=120)
    response = await client.get("/v1/keys", headers=bearer(user.api_key))
    assert response.status_code == 200
    for secret in (user.api_key, str(created["key"])):
        assert secret not in response.text
        assert hashlib.sha256(secret.encode()).hexdigest() not in response.text
    listed = {k["id"]: k for k in response.json()}
    assert set(listed) == {user.key_id, created["id"]}
    entry = listed[str(created["id"])]
    assert "key" not in entry
    assert entry["key_prefix"] == created["key_prefix"]
    assert entry["name"] == "Production Key"
    assert entry["rate_limit_rpm"] == 120
    assert entry["is_active"] is True
    assert entry["created_at"] == created["created_at"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"rate_limit_rpm": "abc"}, "rate_limit_rpm"),
        ({"rate_limit_rpm": 0}, "rate_limit_rpm"),
        ({"rate_limit_rpm": 1.5}, "rate_limit_rpm"),
        ({"monthly_budget_cents": -1}, "monthly_budget_cents"),
        ({"monthly_budget_cents": "lots"}, "monthly_budget_cents"),
        ({"name": 42}, "name"),
        ({"name": "n" * 201}, "name"),
    ],
)
async def test_create_key_refuses_wrong_types_and_creates_nothing(
    client: httpx2.AsyncClient, make_user: MakeUser, body: dict[str, object], param: str
) -> None:
    user = await make_user()
    response = await client.post("/v1/keys", json=body, headers=bearer(user.api_key))
    error = assert_error(response, 400, "invalid_request")
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert await key_ids(client, user.api_key) == [user.key_id]


# --- revoking keys ---------------------------------------------------------------------------------


async def test_deleted_key_is_refused_on_the_very_next_request(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    created = await create_key(client, user.api_key)
    secret = str(created["key"])
    # Warm the auth cache so the refusal cannot come from a cold lookup.
    assert (await client.get("/v1/users/me", headers=bearer(secret))).status_code == 200
    response = await client.delete(f"/v1/keys/{created['id']}", headers=bearer(user.api_key))
    assert response.status_code == 204
    assert response.content == b""
    assert_error(await client.get("/v1/users/me", headers=bearer(secret)), 401, "unauthorized")


async def test_a_key_can_delete_itself(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    response = await client.delete(f"/v1/keys/{user.key_id}", headers=bearer(user.api_key))
    assert response.status_code == 204
    assert_error(await client.get("/v1/keys", headers=bearer(user.api_key)), 401, "unauthorized")


async def test_deleted_key_is_listed_inactive(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    created = await create_key(client, user.api_key)
    await client.delete(f"/v1/keys/{created['id']}", headers=bearer(user.api_key))
    listed = {
        k["id"]: k["is_active"] for k in (await client.get("/v1/keys", headers=bearer(user.api_key))).json()
    }
    assert listed == {user.key_id: True, created["id"]: False}


async def test_deleting_twice_is_not_found(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    created = await create_key(client, user.api_key)
    assert (await client.delete(f"/v1/keys/{created['id']}", headers=bearer(user.api_key))).status_code == 204
    response = await client.delete(f"/v1/keys/{created['id']}", headers=bearer(user.api_key))
    assert assert_error(response, 404, "not_found")["param"] == "id"


@pytest.mark.parametrize("key_id", ["0b5d9f8e-6c1a-4f3e-9a7b-2d4c8e1f0a63", "not-a-uuid", "1", "%20"])
async def test_deleting_an_unknown_or_malformed_id_is_not_found(
    client: httpx2.AsyncClient, make_user: MakeUser, key_id: str
) -> None:
    user = await make_user()
    response = await client.delete(f"/v1/keys/{key_id}", headers=bearer(user.api_key))
    assert_error(response, 404, "not_found")
    assert await key_ids(client, user.api_key) == [user.key_id]


async def test_delete_without_a_key_is_unauthorized(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    assert_error(await client.delete(f"/v1/keys/{user.key_id}"), 401, "unauthorized")
    assert (await client.get("/v1/users/me", headers=bearer(user.api_key))).status_code == 200


# --- tenant isolation ------------------------------------------------------------------------------


async def test_another_user_cannot_delete_my_key(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    alice, bob = await make_user(), await make_user()
    response = await client.delete(f"/v1/keys/{alice.key_id}", headers=bearer(bob.api_key))
    assert_error(response, 404, "not_found")
    assert (await client.get("/v1/users/me", headers=bearer(alice.api_key))).json()["id"] == alice.id


async def test_key_lists_are_per_user(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    alice, bob = await make_user(), await make_user()
    alice_extra = await create_key(client, alice.api_key, name="alice's")
    assert await key_ids(client, bob.api_key) == [bob.key_id]
    assert set(await key_ids(client, alice.api_key)) == {alice.key_id, alice_extra["id"]}


# --- per-key RPM limit -----------------------------------------------------------------------------


async def test_rpm_limit_refuses_the_request_over_it(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    secret = str((await create_key(client, user.api_key, rate_limit_rpm=2))["key"])
    first, second, third = [await client.get("/v1/users/me", headers=bearer(secret)) for _ in range(3)]
    assert (first.status_code, second.status_code) == (200, 200)
    assert [r.headers["x-ratelimit-remaining"] for r in (first, second)] == ["1", "0"]
    error = assert_error(third, 429, "rate_limited")
    assert error["type"] == "rate_limit_error"
    retry_after = third.headers["retry-after"]
    assert retry_after.isdigit()
    assert 1 <= int(retry_after) <= 30
    assert third.headers["x-ratelimit-limit"] == "2"
    assert third.headers["x-ratelimit-remaining"] == "0"
    assert float(third.headers["x-ratelimit-reset"]) > 0


async def test_ok_responses_carry_rate_limit_headers(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    secret = str((await create_key(client, user.api_key, rate_limit_rpm=7))["key"])
    response = await client.get("/v1/keys", headers=bearer(secret))
    assert response.status_code == 200
    assert response.headers["x-ratelimit-limit"] == "7"
    assert response.headers["x-ratelimit-remaining"] == "6"
    assert 0 < float(response.headers["x-ratelimit-reset"]) <= 60


async def test_rpm_limits_are_per_key(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    limited = str((await create_key(client, user.api_key, rate_limit_rpm=1))["key"])
    assert (await client.get("/v1/users/me", headers=bearer(limited))).status_code == 200
    assert_error(await client.get("/v1/users/me", headers=bearer(limited)), 429, "rate_limited")
    assert (await client.get("/v1/users/me", headers=bearer(user.api_key))).status_code == 200
