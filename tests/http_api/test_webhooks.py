"""/v1/webhooks/secret and its rotation through the real ASGI app."""

from __future__ import annotations

import base64
import time
from datetime import datetime

import httpx2
from standardwebhooks import Webhook, WebhookVerificationError

from batchin.core.webhooks.signing import signed_headers
from tests.conftest import MakeUser, assert_error, bearer


async def test_reading_the_secret_needs_a_key(client: httpx2.AsyncClient) -> None:
    assert_error(await client.get("/v1/webhooks/secret"), 401, "unauthorized")
    assert_error(await client.post("/v1/webhooks/secret/rotate"), 401, "unauthorized")
    response = await client.get("/v1/webhooks/secret", headers=bearer("batchin_not_a_key"))
    assert_error(response, 401, "unauthorized")


async def test_the_secret_is_made_on_first_read_and_stays(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    first = await client.get("/v1/webhooks/secret", headers=bearer(user.api_key))
    assert first.status_code == 200, first.text
    body = first.json()
    assert set(body) == {"secret", "created_at"}
    assert body["secret"].startswith("whsec_")
    assert len(base64.b64decode(body["secret"].removeprefix("whsec_"))) >= 24
    assert datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))
    again = await client.get("/v1/webhooks/secret", headers=bearer(user.api_key))
    assert again.json() == body


async def test_each_user_has_their_own_secret(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    one, two = await make_user(), await make_user()
    first = (await client.get("/v1/webhooks/secret", headers=bearer(one.api_key))).json()["secret"]
    second = (await client.get("/v1/webhooks/secret", headers=bearer(two.api_key))).json()["secret"]
    assert first != second


async def test_rotation_replaces_the_secret_and_the_old_one_stops_verifying(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    old = (await client.get("/v1/webhooks/secret", headers=bearer(user.api_key))).json()["secret"]
    rotated = await client.post("/v1/webhooks/secret/rotate", headers=bearer(user.api_key))
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new.startswith("whsec_")
    assert new != old
    assert (await client.get("/v1/webhooks/secret", headers=bearer(user.api_key))).json()["secret"] == new
    # What the server signs from now on verifies with the new secret only.
    body = b'{"type":"batch.completed"}'
    headers = signed_headers(new, "msg_rot", int(time.time()), body)
    assert Webhook(new).verify(body, headers) == {"type": "batch.completed"}
    try:
        Webhook(old).verify(body, headers)
    except WebhookVerificationError:
        pass
    else:
        raise AssertionError("the old secret still verifies")


async def test_rotating_before_any_read_makes_a_secret(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    rotated = await client.post("/v1/webhooks/secret/rotate", headers=bearer(user.api_key))
    assert rotated.status_code == 200, rotated.text
    read = await client.get("/v1/webhooks/secret", headers=bearer(user.api_key))
    assert read.json() == rotated.json()


async def test_the_routes_are_in_the_openapi_document(client: httpx2.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "get" in paths["/v1/webhooks/secret"]
    assert "post" in paths["/v1/webhooks/secret/rotate"]
