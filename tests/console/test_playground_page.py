"""The Playground over the real ASGI app: the page offers each kind's models from the live catalog,
and its per-session key is minted only through a CSRF-checked console POST, replaced (never shown
twice) when asked again, and revoked when the session signs out."""

from __future__ import annotations

import re

import httpx2
import pytest

from batchin.console.playground_pages import KEY_NAME_PREFIX
from batchin.errors import BatchInError
from batchin.protocol.accounts import KeyCreateRequest
from batchin.services import Services
from tests.conftest import MakeUser, bearer
from tests.console.conftest import csrf_of, form_post

ORIGIN = {"Origin": "http://testserver"}


async def signed_in(client: httpx2.AsyncClient, make_user: MakeUser) -> str:
    """Signs `client` in (by API key); the user's id."""
    user = await make_user()
    await form_post(client, "/console/login", "/console/login/key", {"api_key": user.api_key})
    return user.id


def options_of(html: str, select_id: str) -> list[str]:
    found = re.search(rf'<select id="{select_id}"[^>]*>(.*?)</select>', html, re.S)
    return re.findall(r'<option value="([^"]+)"', found.group(1)) if found else []


async def mint(client: httpx2.AsyncClient) -> httpx2.Response:
    page = await client.get("/console/playground")
    token = csrf_of(page.text)
    return await client.post("/console/playground/key", data={"csrf_token": token}, headers=ORIGIN)


async def playground_keys(services: Services, user_id: str) -> list[str]:
    keys = await services.accounts.list_keys(user_id)
    return [k.id for k in keys if k.is_active and k.name.startswith(KEY_NAME_PREFIX)]


async def test_the_page_offers_each_kind_the_catalog_serves_in_both_languages(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    await signed_in(client, make_user)
    catalog = services.catalog.list_models("USD").data
    for lang, title in (("en", "Playground"), ("zh", "在线体验")):
        page = await client.get(f"/console/playground?lang={lang}")
        assert page.status_code == 200, page.text[:500]
        assert f"<h1>{title}</h1>" in page.text
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert '<script src="/console/static/playground.js" defer></script>' in page.text
        assert 'href="/console/playground" aria-current="page"' in page.text  # in the nav
        for kind in ("chat", "embedding", "speech", "transcription", "image"):
            served = [m.id for m in catalog if kind in m.kind and m.status != "unavailable"]
            assert options_of(page.text, f"{kind}-model") == served
    offered = {m for kind in ("chat", "image") for m in options_of(page.text, f"{kind}-model")}
    assert "smollm2-135m-instruct" in offered
    assert "tiny-random-video" not in offered  # a video model is no chat or image model


async def test_the_page_and_its_script_stay_small(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    await signed_in(client, make_user)
    page = await client.get("/console/playground")
    assets = re.findall(r'(?:src|href)="(/console/static/[^"]+)"', page.text)
    sizes = [len((await client.get(a)).content) for a in assets]
    assert "/console/static/playground.js" in assets
    assert len(page.content) + sum(sizes) < 300 * 1024


async def test_a_key_is_minted_per_ask_and_replaces_the_sessions_previous_one(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user_id = await signed_in(client, make_user)
    first = await mint(client)
    assert first.status_code == 200, first.text
    assert first.headers["cache-control"] == "no-store"
    made = first.json()
    assert made["name"].startswith(KEY_NAME_PREFIX)
    principal = await services.auth.authenticate(made["key"])
    assert principal.scopes == {"inference"}
    assert principal.key_id == made["key_id"]
    # The key is a real API key of the user, listed (without its secret) on the keys page.
    assert made["name"] in (await client.get("/console/keys")).text
    assert made["key"] not in (await client.get("/console/keys")).text

    second = (await mint(client)).json()
    assert second["key"] != made["key"]
    assert second["name"] == made["name"]  # the same session's key, replaced
    with pytest.raises(BatchInError):
        await services.auth.authenticate(made["key"])
    assert await playground_keys(services, user_id) == [second["key_id"]]


async def test_minting_needs_the_csrf_token_a_same_site_origin_and_a_session(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user_id = await signed_in(client, make_user)
    page = await client.get("/console/playground")
    token = csrf_of(page.text)
    missing = await client.post("/console/playground/key", data={}, headers=ORIGIN)
    assert missing.status_code == 403
    cross = await client.post(
        "/console/playground/key", data={"csrf_token": token}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    client.cookies.clear()
    signed_out = await client.post("/console/playground/key", data={"csrf_token": token}, headers=ORIGIN)
    assert signed_out.status_code == 403
    assert "batchin_api_" not in missing.text + cross.text + signed_out.text
    assert await playground_keys(services, user_id) == []


async def test_the_api_takes_no_console_cookie(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    await signed_in(client, make_user)
    assert client.cookies.get("batchin_session")
    refused = await client.post(
        "/v1/chat/completions",
        json={"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi"}]},
        headers=ORIGIN,
    )
    assert refused.status_code == 401


async def test_signing_out_revokes_the_sessions_key_only(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    await form_post(client, "/console/login", "/console/login/key", {"api_key": user.api_key})
    secret = (await mint(client)).json()["key"]
    overview = await client.get("/console/overview")
    out = await client.post("/console/logout", data={"csrf_token": csrf_of(overview.text)}, headers=ORIGIN)
    assert out.status_code == 303
    with pytest.raises(BatchInError):
        await services.auth.authenticate(secret)
    assert (await client.get("/v1/users/me", headers=bearer(user.api_key))).status_code == 200
    assert await playground_keys(services, user.id) == []


async def test_a_key_left_by_an_expired_session_is_revoked_at_the_next_mint(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user_id = await signed_in(client, make_user)
    orphan = await services.accounts.create_key(
        user_id, KeyCreateRequest(name=f"{KEY_NAME_PREFIX}0123456789ab)", scopes=["inference"])
    )
    kept = (await mint(client)).json()
    assert set(await playground_keys(services, user_id)) == {orphan.id, kept["key_id"]}  # still young
    services.settings.console_session_hours = 0  # every key before now outlived any session
    renewed = (await mint(client)).json()
    assert await playground_keys(services, user_id) == [renewed["key_id"]]
