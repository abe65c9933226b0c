"""Signed media links through the real ASGI app: images' data[].url and a video's output_url open
without a key (the openai SDK's url in a browser), in the right Content-Type and with Range; links
name the host the caller reached (not a fixed default); expired or altered links are 403 in the
envelope; a video's link exists from `queued` and says it is not ready until the job completes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from batchin.app import create_app
from batchin.config import Settings
from batchin.core.media.links import LinkSigner, load_or_create_link_key
from batchin.models.registry import ModelRegistry
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser, assert_error, bearer
from tests.media_fixtures import (
    IMAGE_MODEL,
    VIDEO_MODEL,
    media_registry,
    media_services,
    sdk_client,
    wait_for_status,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
async def registry() -> ModelRegistry:
    return await media_registry()


@pytest.fixture
async def services(settings: Settings, registry: ModelRegistry) -> AsyncIterator[Services]:
    async with media_services(settings, registry, worker=False) as built:
        yield built


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user(credit_cents=1_000)


def local(url: str) -> str:
    """The link as a path and query, to send through the in-process app."""
    split = urlsplit(url)
    return f"{split.path}?{split.query}"


async def image_link(client: httpx2.AsyncClient, user: UserCreated) -> str:
    body = {"model": IMAGE_MODEL, "prompt": "a red kite", "size": "64x64"}
    response = await client.post("/v1/images", json=body, headers=bearer(user.api_key))
    assert response.status_code == 200, response.text
    url: str = response.json()["data"][0]["url"]
    return url


async def test_the_sdks_image_url_opens_without_a_key(services: Services, user: UserCreated) -> None:
    async with sdk_client(services, user.api_key) as sdk:
        result = await sdk.images.generate(model=IMAGE_MODEL, prompt="a lighthouse", size="64x64")
    url = result.data[0].url
    assert url is not None
    transport = httpx2.ASGITransport(app=create_app(services.settings, services))
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as browser:
        response = await browser.get(url)  # as an <img> tag would: no Authorization header

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert response.headers["cache-control"].startswith("private, max-age=")


async def test_a_link_is_valid_for_the_configured_time(
    settings: Settings, registry: ModelRegistry, make_user: MakeUser
) -> None:
    async with media_services(settings, registry, worker=False, media_link_ttl_seconds=600) as built:
        user = await built.accounts.create_user("ttl@example.com", "TTL", 1_000)
        transport = httpx2.ASGITransport(app=create_app(built.settings, built))
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
            before = int(time.time())
            url = await image_link(client, user)
            after = int(time.time())

    expires = int(parse_qs(urlsplit(url).query)["expires"][0])
    assert before + 600 <= expires <= after + 600


async def test_an_altered_link_is_403_in_the_envelope(
    client: httpx2.AsyncClient, user: UserCreated, make_user: MakeUser
) -> None:
    url = await image_link(client, user)
    split = urlsplit(url)
    query = parse_qs(split.query)
    other = (await make_user()).api_key
    other_file = urlsplit(await image_link(client, await make_user(credit_cents=100))).path

    later = f"{split.path}?expires={int(query['expires'][0]) + 3600}&signature={query['signature'][0]}"
    elsewhere = f"{other_file}?{split.query}"  # a genuine signature on another file's id
    for path in (later, elsewhere, f"{split.path}?expires={query['expires'][0]}", split.path):
        assert_error(await client.get(path), 403, "permission_denied")
    # A key does not stand in for the signature on this route.
    assert_error(await client.get(split.path, headers=bearer(other)), 403, "permission_denied")


async def test_an_expired_link_is_403_saying_so(
    services: Services, client: httpx2.AsyncClient, user: UserCreated
) -> None:
    fresh = await image_link(client, user)
    file_id = urlsplit(fresh).path.rsplit("/", 1)[1]
    # Minted by this server's key, as it would have been an hour and a minute ago.
    key = load_or_create_link_key(services.settings.data_dir / "media" / "link_key")
    stale = LinkSigner(key, 3600, "http://testserver").url(file_id, now=time.time() - 3660)

    response = await client.get(local(stale))

    assert "expired" in assert_error(response, 403, "permission_denied")["message"]
    assert (await client.get(local(fresh))).status_code == 200


async def test_links_name_the_port_the_caller_reached(
    settings: Settings, registry: ModelRegistry, make_user: MakeUser
) -> None:
    # No public_base_url: `batchin serve --port 9000` reached as localhost:9000 links to it.
    unset = Settings(data_dir=settings.data_dir, database_url=settings.database_url, port=9000)
    async with media_services(unset, registry, worker=False) as built:
        user = await built.accounts.create_user("port@example.com", "Port", 1_000)
        transport = httpx2.ASGITransport(app=create_app(built.settings, built))
        async with httpx2.AsyncClient(transport=transport, base_url="http://localhost:9000") as client:
            url = await image_link(client, user)
            opened = await client.get(url)
            forged = await client.post(
                "/v1/images",
                json={"model": IMAGE_MODEL, "prompt": "x", "size": "64x64"},
                headers={**bearer(user.api_key), "Host": "evil.example"},
            )

    assert url.startswith("http://localhost:9000/v1/media/file-")
    assert opened.status_code == 200
    # A Host the server does not answer to never lands in a link: its own bind address does.
    assert forged.json()["data"][0]["url"].startswith("http://127.0.0.1:9000/v1/media/file-")


async def test_a_video_link_exists_from_queued_and_opens_when_completed(
    services: Services, client: httpx2.AsyncClient, user: UserCreated
) -> None:
    headers = bearer(user.api_key)
    body = {"model": VIDEO_MODEL, "prompt": "a slow tide", "duration_seconds": 1, "size": "64x64"}
    created = (await client.post("/v1/videos", json=body, headers=headers)).json()
    assert (created["object"], created["status"]) == ("video.generation", "queued")
    assert created["output_url"].startswith(f"http://testserver/v1/media/{created['id']}?expires=")

    early = await client.get(local(created["output_url"]))
    error = assert_error(early, 404, "not_found")
    assert "not ready" in error["message"]
    assert early.headers["retry-after"] == "5"

    await services.videos.start()
    done = await wait_for_status(client, created["id"], headers, {"completed", "failed"})
    assert (done["object"], done["status"]) == ("video.generation", "completed")
    whole = await client.get(local(created["output_url"]))  # the link handed out while queued
    part = await client.get(local(done["output_url"]), headers={"Range": "bytes=0-99"})

    assert whole.status_code == 200
    assert whole.headers["content-type"] == "video/mp4"
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 0-99/{len(whole.content)}"
    assert part.content == whole.content[:100]


async def test_a_job_read_with_no_request_links_to_where_it_was_created(
    settings: Settings, registry: ModelRegistry
) -> None:
    unset = Settings(data_dir=settings.data_dir, database_url=settings.database_url, port=9000)
    async with media_services(unset, registry, worker=False) as built:
        user = await built.accounts.create_user("origin@example.com", "Origin", 1_000)
        transport = httpx2.ASGITransport(app=create_app(built.settings, built))
        async with httpx2.AsyncClient(transport=transport, base_url="http://localhost:9000") as client:
            body = {"model": VIDEO_MODEL, "prompt": "dunes", "duration_seconds": 1, "size": "64x64"}
            created = (await client.post("/v1/videos", json=body, headers=bearer(user.api_key))).json()
        # Read back with no request to say where the caller is (an MCP tool over stdio).
        video = await built.videos.get(user.id, created["id"])

    assert video.output_url is not None
    assert video.output_url.startswith(f"http://localhost:9000/v1/media/{created['id']}?")
