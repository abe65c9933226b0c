"""The storage quota on generated media, over HTTP on the tiny random diffusers pipelines: images
asked for by URL and video outputs are stored files, so a caller with no room is refused before
anything runs, and outputs that turn out not to fit are refused after the run with nothing stored,
charged or logged. Inline images (b64_json) store nothing and are not limited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx2
import pytest
from sqlalchemy import Table, func, select

from batchin.config import Settings
from batchin.models.registry import ModelRegistry
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from batchin.store.tables import files, video_jobs
from tests.conftest import MakeUser, assert_error, bearer
from tests.media_fixtures import (
    IMAGE_MODEL,
    IMAGE_UNITS,
    VIDEO_MODEL,
    media_registry,
    media_services,
    wait_for_status,
)
from tests.text_fixtures import balance_units, logs_of

pytestmark = [pytest.mark.slow]

QUOTA = 200  # bytes: less than any PNG or MP4 the tiny pipelines make


@pytest.fixture(scope="session")
async def registry() -> ModelRegistry:
    return await media_registry()


@pytest.fixture
async def services(settings: Settings, registry: ModelRegistry) -> AsyncIterator[Services]:
    async with media_services(settings, registry, storage_quota_bytes=QUOTA) as built:
        yield built


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user(credit_cents=1_000)


async def fill_quota(services: Services, user: UserCreated) -> None:
    await services.files.store(
        user.id, b"f" * QUOTA, filename="full.bin", purpose="image_output", content_type="image/png"
    )


async def count(services: Services, table: Table) -> int:
    async with services.database.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


def image(response_format: str = "url", n: int = 1) -> dict[str, object]:
    return {
        "model": IMAGE_MODEL,
        "prompt": "a red fox",
        "size": "64x64",
        "n": n,
        "response_format": response_format,
    }


async def test_an_image_call_with_no_room_left_is_refused_before_it_runs(
    services: Services, client: httpx2.AsyncClient, user: UserCreated
) -> None:
    await fill_quota(services, user)
    before = await balance_units(services, user)

    response = await client.post("/v1/images/generations", json=image(), headers=bearer(user.api_key))

    error = assert_error(response, 413, "storage_quota_exceeded")
    assert f"use {QUOTA} bytes of your storage quota of {QUOTA} bytes" in error["message"]
    assert await balance_units(services, user) == before
    assert await logs_of(services, user) == []
    assert await count(services, files) == 1
    inline = await client.post("/v1/images/generations", json=image("b64_json"), headers=bearer(user.api_key))
    assert inline.status_code == 200, inline.text  # stores nothing: no quota
    assert before - await balance_units(services, user) == IMAGE_UNITS


async def test_images_that_do_not_fit_are_refused_after_the_run_leaving_nothing(
    services: Services, client: httpx2.AsyncClient, user: UserCreated
) -> None:
    before = await balance_units(services, user)

    response = await client.post("/v1/images/generations", json=image(n=2), headers=bearer(user.api_key))

    error = assert_error(response, 413, "storage_quota_exceeded")
    assert "past your storage quota of 200 bytes (0 used)" in error["message"]
    assert await balance_units(services, user) == before
    assert await logs_of(services, user) == []
    assert await count(services, files) == 0
    stored = [path for path in (services.settings.data_dir / "files").rglob("*") if path.is_file()]
    assert stored == []  # no PNG, not even a partial one
    assert await services.files.quota.used(user.id) == 0


async def test_a_video_with_no_room_left_is_refused_at_submit(
    services: Services, client: httpx2.AsyncClient, user: UserCreated
) -> None:
    await fill_quota(services, user)
    before = await balance_units(services, user)
    body = {"model": VIDEO_MODEL, "prompt": "rain", "seconds": "1", "size": "64x64"}

    response = await client.post("/v1/videos", json=body, headers=bearer(user.api_key))

    assert_error(response, 413, "storage_quota_exceeded")
    assert await balance_units(services, user) == before
    assert await count(services, video_jobs) == 0


async def test_a_video_whose_mp4_does_not_fit_fails_and_costs_nothing(
    services: Services, client: httpx2.AsyncClient, user: UserCreated
) -> None:
    before = await balance_units(services, user)
    body = {"model": VIDEO_MODEL, "prompt": "rain", "seconds": "1", "size": "64x64"}
    created = (await client.post("/v1/videos", json=body, headers=bearer(user.api_key))).json()

    done = await wait_for_status(client, created["id"], bearer(user.api_key), {"completed", "failed"})

    assert done["status"] == "failed", done
    assert done["error"]["code"] == "storage_quota_exceeded"
    for _ in range(500):  # the reservation is released just after the job is marked failed
        if await balance_units(services, user) == before:
            break
        await asyncio.sleep(0.02)
    assert await balance_units(services, user) == before
    assert await count(services, files) == 0
    assert await services.files.quota.used(user.id) == 0
