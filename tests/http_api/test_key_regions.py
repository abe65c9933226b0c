"""Regions the caller cannot forge (issue 13), over HTTP: X-BatchIn-Region is honoured as is only
from a trusted proxy; from anyone else it only chooses among the key's own regions, so naming
another region never escapes the limit of the one the call belongs to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from batchin.config import RegionLimit, Settings
from batchin.protocol.accounts import KeyCreateRequest
from batchin.services import Services
from tests.conftest import MakeUser, assert_error, bearer
from tests.text_fixtures import asgi_client, scripted_services

MODEL = "scripted-chat"
PROXY = "10.0.0.7"  # inside the trusted network below
STRANGER = "203.0.113.9"
# "eu" is the default region and allows one call a minute; "us" has no limit.
REGIONS: dict[str, Any] = {
    "region": "eu",
    "regions": ["eu", "us"],
    "region_limits": [RegionLimit(region="eu", model=MODEL, rpm=1)],
    "trusted_proxies": ["10.0.0.0/8"],
}


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with scripted_services(settings, **REGIONS) as built:
        yield built


async def chat(client: httpx2.AsyncClient, key: str, region: str | None = None) -> httpx2.Response:
    headers = bearer(key) | ({"X-BatchIn-Region": region} if region else {})
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    return await client.post("/v1/chat/completions", json=body, headers=headers)


async def key_in(services: Services, user_id: str, *regions: str) -> str:
    return (await services.accounts.create_key(user_id, KeyCreateRequest(regions=list(regions)))).key


async def test_a_forged_region_header_does_not_escape_the_region_limit(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    async with asgi_client(services, host=STRANGER) as client:
        assert (await chat(client, user.api_key)).status_code == 200  # eu's one call this minute
        forged = await chat(client, user.api_key, region="us")
        assert assert_error(forged, 403, "permission_denied")["param"] == "X-BatchIn-Region"
        assert_error(await chat(client, user.api_key), 429, "rate_limited")
        # Naming the default region itself changes nothing either.
        assert_error(await chat(client, user.api_key, region="eu"), 429, "rate_limited")


async def test_a_trusted_proxys_region_header_is_honoured(services: Services, make_user: MakeUser) -> None:
    user = await make_user()
    async with asgi_client(services, host=PROXY) as client:
        assert (await chat(client, user.api_key)).status_code == 200
        assert_error(await chat(client, user.api_key), 429, "rate_limited")
        for _ in range(3):  # the proxy says the calls came in through "us": its (absent) limit applies
            assert (await chat(client, user.api_key, region="us")).status_code == 200


async def test_a_trusted_proxy_cannot_take_a_key_outside_its_regions(
    services: Services, make_user: MakeUser
) -> None:
    key = await key_in(services, (await make_user()).id, "us")
    async with asgi_client(services, host=PROXY) as client:
        refused = await chat(client, key, region="eu")
    assert assert_error(refused, 403, "permission_denied")["param"] == "X-BatchIn-Region"


async def test_a_key_bound_to_regions_is_refused_others_and_enters_its_own(
    services: Services, make_user: MakeUser
) -> None:
    key = await key_in(services, (await make_user()).id, "us")
    async with asgi_client(services, host=STRANGER) as client:
        refused = await chat(client, key, region="eu")
        assert assert_error(refused, 403, "permission_denied")["param"] == "X-BatchIn-Region"
        for _ in range(3):  # no header: the key's own region, not eu's one call a minute
            assert (await chat(client, key)).status_code == 200
        assert (await chat(client, key, region="us")).status_code == 200


async def test_a_key_may_choose_among_its_own_regions(services: Services, make_user: MakeUser) -> None:
    key = await key_in(services, (await make_user()).id, "us", "eu")
    async with asgi_client(services, host=STRANGER) as client:
        assert (await chat(client, key)).status_code == 200  # the default region, eu, is among its own
        assert_error(await chat(client, key, region="eu"), 429, "rate_limited")
        assert (await chat(client, key, region="us")).status_code == 200


async def test_an_unknown_region_is_400_from_anyone(services: Services, make_user: MakeUser) -> None:
    user = await make_user()
    for host in (STRANGER, PROXY):
        async with asgi_client(services, host=host) as client:
            response = await chat(client, user.api_key, region="mars")
        assert assert_error(response, 400, "invalid_request")["param"] == "X-BatchIn-Region"


# --- keys carry regions --------------------------------------------------------------------------


async def create_key(client: httpx2.AsyncClient, key: str, **body: Any) -> httpx2.Response:
    return await client.post("/v1/keys", json=body, headers=bearer(key))


async def test_a_key_is_created_with_regions_and_lists_them(services: Services, make_user: MakeUser) -> None:
    user = await make_user()
    async with asgi_client(services) as client:
        created = await create_key(client, user.api_key, regions=["us", "eu", "us"])
        assert created.status_code == 200, created.text
        assert created.json()["regions"] == ["us", "eu"]
        listed = (await client.get("/v1/keys", headers=bearer(user.api_key))).json()
    by_id = {k["id"]: k["regions"] for k in listed}
    assert by_id == {created.json()["id"]: ["us", "eu"], user.key_id: []}


async def test_a_key_cannot_create_a_key_with_regions_beyond_its_own(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    key = await key_in(services, user.id, "us")
    async with asgi_client(services) as client:
        for regions in (["eu"], ["us", "eu"], []):
            refused = await create_key(client, key, regions=regions)
            assert assert_error(refused, 403, "permission_denied")["param"] == "regions"
        inherited = await create_key(client, key)
        assert inherited.json()["regions"] == ["us"]
        assert len((await client.get("/v1/keys", headers=bearer(user.api_key))).json()) == 3


async def test_a_key_cannot_name_a_region_this_deployment_does_not_serve(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    async with asgi_client(services) as client:
        refused = await create_key(client, user.api_key, regions=["mars"])
    assert assert_error(refused, 400, "invalid_request")["param"] == "regions"
