"""/v1/videos through the official openai SDK (multipart) and the seed's JSON form, on the tiny
random text-to-video pipeline: the job's life, the MP4 (H.264), tenant isolation, billing, refusals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx2
import pytest

from batchin.app import create_app
from batchin.config import Settings
from batchin.models.registry import ModelRegistry
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser, assert_error, bearer
from tests.media_fixtures import (
    IMAGE_MODEL,
    VIDEO_MODEL,
    VIDEO_SECOND_UNITS,
    decode_mp4,
    media_registry,
    media_services,
    sdk_client,
    wait_for_status,
)
from tests.text_fixtures import balance_units, logs_of

pytestmark = [
    pytest.mark.slow,
    # openai 3.51 marks its videos resource deprecated (the hosted Sora API's shutdown date); the
    # SDK calls are still what clients send to /v1/videos.
    pytest.mark.filterwarnings(
        "ignore:The Sora API is scheduled to permanently shut down:DeprecationWarning"
    ),
]


@pytest.fixture(scope="session")
async def registry() -> ModelRegistry:
    return await media_registry()


@pytest.fixture
async def services(settings: Settings, registry: ModelRegistry) -> AsyncIterator[Services]:
    async with media_services(settings, registry) as built:
        yield built


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user(credit_cents=1_000)


async def test_sdk_create_poll_download(services: Services, user: UserCreated) -> None:
    async with sdk_client(services, user.api_key) as client:
        created = await client.videos.create(
            model=VIDEO_MODEL, prompt="waves on a beach", seconds="4", size="320x240"
        )
        assert (created.object, created.status, created.model, created.seconds) == (
            "video.generation",
            "queued",
            VIDEO_MODEL,
            "4",
        )
        assert created.id.startswith("video_")
        video = created
        for _ in range(2400):
            video = await client.videos.retrieve(created.id)
            if video.status in ("completed", "failed"):
                break
            assert video.status in ("queued", "in_progress")
            assert 0 <= video.progress <= 100
            await asyncio.sleep(0.05)
        assert (video.status, video.progress, video.error) == ("completed", 100, None)
        assert video.completed_at is not None
        content = await client.videos.download_content(created.id)
        data = content.content
    assert b"ftyp" in data[:16]
    assert content.response.headers["content-type"] == "video/mp4"
    assert decode_mp4(data) == {"codec": "h264", "width": 320, "height": 240, "frames": 32, "duration": 4.0}


async def test_seed_json_form_and_output_url(
    services: Services, client: httpx2.AsyncClient, user: UserCreated
) -> None:
    headers = bearer(user.api_key)
    body = {
        "model": VIDEO_MODEL,
        "prompt": "Create a product teaser",
        "duration_seconds": 2,
        "aspect_ratio": "1:1",
    }
    response = await client.post("/v1/videos", json=body, headers=headers)
    assert response.status_code == 200, response.text
    created = response.json()
    assert (created["status"], created["duration_seconds"], created["seconds"], created["size"]) == (
        "queued",
        2,
        "2",
        "720x720",
    )
    assert response.headers["traceparent"].startswith("00-")
    done = await wait_for_status(client, created["id"], headers, {"completed", "failed"})
    assert done["status"] == "completed", done
    assert done["output_url"].startswith(f"http://testserver/v1/media/{created['id']}?expires=")
    mp4 = await client.get(done["output_url"].removeprefix("http://testserver"))  # no key needed
    assert mp4.status_code == 200
    assert mp4.headers["content-type"] == "video/mp4"
    assert decode_mp4(mp4.content)["duration"] == 2.0
    meta = (await client.get(f"/v1/files/{done['file_id']}", headers=headers)).json()
    assert (meta["object"], meta["purpose"], meta["bytes"]) == ("file", "video_output", len(mp4.content))


async def test_completed_job_is_billed_once_per_second(
    services: Services, client: httpx2.AsyncClient, user: UserCreated
) -> None:
    before = await balance_units(services, user)
    body = {"model": VIDEO_MODEL, "prompt": "rain", "seconds": "3", "size": "64x64"}
    created = (await client.post("/v1/videos", json=body, headers=bearer(user.api_key))).json()
    assert before - await balance_units(services, user) == 3 * VIDEO_SECOND_UNITS  # reserved at submit
    await wait_for_status(client, created["id"], bearer(user.api_key), {"completed"})
    for _ in range(1500):  # the worker settles just after marking the job completed
        if await logs_of(services, user):
            break
        await asyncio.sleep(0.02)
    await services.videos.worker.recover()  # a recovery pass must not bill it again
    assert before - await balance_units(services, user) == 3 * VIDEO_SECOND_UNITS
    logs = await logs_of(services, user)
    assert [(log.endpoint, log.model, log.status, log.units, log.unit) for log in logs] == [
        ("videos", VIDEO_MODEL, "succeeded", 3.0, "video_seconds")
    ]


async def test_videos_are_tenant_isolated(
    services: Services, client: httpx2.AsyncClient, user: UserCreated, make_user: MakeUser
) -> None:
    other = await make_user()
    body = {"model": VIDEO_MODEL, "prompt": "mine", "seconds": "1", "size": "64x64"}
    created = (await client.post("/v1/videos", json=body, headers=bearer(user.api_key))).json()
    done = await wait_for_status(client, created["id"], bearer(user.api_key), {"completed"})
    theirs = bearer(other.api_key)
    for path in (
        f"/v1/videos/{created['id']}",
        f"/v1/videos/{created['id']}/content",
        f"/v1/files/{done['file_id']}",
    ):
        assert_error(await client.get(path, headers=theirs), 404, "not_found")
    assert_error(await client.delete(f"/v1/videos/{created['id']}", headers=theirs), 404, "not_found")
    assert (await client.get("/v1/videos", headers=theirs)).json()["data"] == []
    mine = (await client.get("/v1/videos", headers=bearer(user.api_key))).json()
    assert [v["id"] for v in mine["data"]] == [created["id"]]


async def test_delete_before_start_releases_the_reservation(
    settings: Settings, registry: ModelRegistry, make_user: MakeUser
) -> None:
    async with media_services(settings, registry, worker=False) as idle:
        user = await idle.accounts.create_user("idle@example.com", "Idle", 1_000)
        transport = httpx2.ASGITransport(app=create_app(idle.settings, idle))
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
            before = await balance_units(idle, user)
            body = {"model": VIDEO_MODEL, "prompt": "never made", "seconds": "5", "size": "64x64"}
            created = (await client.post("/v1/videos", json=body, headers=bearer(user.api_key))).json()
            assert await balance_units(idle, user) == before - 5 * VIDEO_SECOND_UNITS
            deleted = await client.delete(f"/v1/videos/{created['id']}", headers=bearer(user.api_key))
            assert deleted.json() == {"id": created["id"], "object": "video.deleted", "deleted": True}
            assert await balance_units(idle, user) == before
            assert await logs_of(idle, user) == []
            assert_error(
                await client.get(f"/v1/videos/{created['id']}", headers=bearer(user.api_key)),
                404,
                "not_found",
            )


async def test_content_before_completion_is_400(
    settings: Settings, registry: ModelRegistry, make_user: MakeUser
) -> None:
    async with media_services(settings, registry, worker=False) as idle:
        user = await idle.accounts.create_user("wait@example.com", "Wait", 1_000)
        transport = httpx2.ASGITransport(app=create_app(idle.settings, idle))
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
            body = {"model": VIDEO_MODEL, "prompt": "later", "seconds": "1", "size": "64x64"}
            created = (await client.post("/v1/videos", json=body, headers=bearer(user.api_key))).json()
            response = await client.get(f"/v1/videos/{created['id']}/content", headers=bearer(user.api_key))
            assert assert_error(response, 400, "invalid_request")["param"] == "video_id"


@pytest.mark.parametrize(
    ("change", "status", "code", "param"),
    [
        ({"seconds": "abc"}, 400, "invalid_request", "seconds"),
        ({"seconds": "0"}, 400, "invalid_request", "seconds"),
        ({"seconds": "99"}, 400, "invalid_request", "seconds"),
        ({"duration_seconds": 2.5, "seconds": None}, 400, "invalid_request", "duration_seconds"),
        ({"size": "wide"}, 400, "invalid_request", "size"),
        ({"size": "65x64"}, 400, "invalid_request", "size"),
        ({"aspect_ratio": "21:9"}, 400, "invalid_request", "aspect_ratio"),
        ({"prompt": ""}, 400, "invalid_request", "prompt"),
        ({"model": "no-such-model"}, 404, "not_found", "model"),
        ({"model": IMAGE_MODEL}, 400, "invalid_request", "model"),
    ],
)
async def test_bad_input_is_refused_and_not_billed(
    services: Services,
    client: httpx2.AsyncClient,
    user: UserCreated,
    change: dict[str, object],
    status: int,
    code: str,
    param: str,
) -> None:
    before = await balance_units(services, user)
    body = {"model": VIDEO_MODEL, "prompt": "a cat", "seconds": "1", "size": "64x64", **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = await client.post("/v1/videos", json=body, headers=bearer(user.api_key))
    assert assert_error(response, status, code)["param"] == param
    assert await balance_units(services, user) == before
    assert (await client.get("/v1/videos", headers=bearer(user.api_key))).json()["data"] == []


async def test_multipart_bad_seconds_is_400(client: httpx2.AsyncClient, user: UserCreated) -> None:
    form = {"model": VIDEO_MODEL, "prompt": "a cat", "seconds": "four"}
    response = await client.post(
        "/v1/videos", data=form, files={"x": ("", b"")}, headers=bearer(user.api_key)
    )
    assert assert_error(response, 400, "invalid_request")["param"] == "seconds"


async def test_multipart_image_reference_is_refused(client: httpx2.AsyncClient, user: UserCreated) -> None:
    form = {"model": VIDEO_MODEL, "prompt": "a cat"}
    files = {"input_reference": ("ref.png", b"\x89PNG", "image/png")}
    response = await client.post("/v1/videos", data=form, files=files, headers=bearer(user.api_key))
    assert assert_error(response, 400, "invalid_request")["param"] == "input_reference"
