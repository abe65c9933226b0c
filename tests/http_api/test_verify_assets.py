"""/verify/assets/{name}: the page's shipped files only; any other name is a 404 that keeps nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest

from batchin.config import Settings
from batchin.http_api.routes import verify_page
from batchin.services import Services
from tests.conftest import assert_error
from tests.text_fixtures import scripted_services


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with scripted_services(settings) as built:
        yield built


@pytest.mark.parametrize("name", sorted(verify_page.ASSETS))
async def test_each_shipped_asset_is_served_with_its_type(client: httpx2.AsyncClient, name: str) -> None:
    response = await client.get(f"/verify/assets/{name}")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == verify_page.ASSETS[name]
    assert response.content
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_the_page_names_only_shipped_assets(client: httpx2.AsyncClient) -> None:
    page = (await client.get("/verify/00000000-0000-4000-8000-000000000000")).text

    for name in ("verify.js", "verify-page.js", "verify.css", "nacl-fast.min.js"):
        assert f'"/verify/assets/{name}"' in page


@pytest.mark.parametrize(
    "name",
    [
        "made-up.js",
        "index.html",
        "README.txt",
        "..%2Fopenapi.json",
        ".verify.js",
        "verify.js.map",
        "x" * 300 + ".js",
    ],
)
async def test_an_unknown_name_is_a_404_envelope(client: httpx2.AsyncClient, name: str) -> None:
    assert_error(await client.get(f"/verify/assets/{name}"), 404, "not_found")


async def test_unknown_names_add_nothing_to_the_cache(client: httpx2.AsyncClient) -> None:
    for name in verify_page.ASSETS:
        await client.get(f"/verify/assets/{name}")
    held = verify_page.cached_files()

    for i in range(200):
        assert_error(await client.get(f"/verify/assets/probe-{i}.js"), 404, "not_found")

    assert verify_page.cached_files() == held
    assert held <= len(verify_page.ASSETS) + 1  # the assets and the page itself
