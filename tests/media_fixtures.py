"""Building blocks for image/video tests: a session-wide registry of the tiny random pipelines
(built once per test session), services over it with the video worker running, and an openai SDK
client over the in-process ASGI app."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai

from batchin.app import build_services, create_app
from batchin.config import Settings
from batchin.models.catalog import Catalog, load_catalog
from batchin.models.registry import ModelRegistry
from batchin.services import Services
from tests.db_reset import empty_tables

IMAGE_MODEL = "tiny-random-image"
VIDEO_MODEL = "tiny-random-video"
SLOW_VIDEO_MODEL = "tiny-random-video-slow"  # many denoising steps: a job that lasts seconds
SLOW_IMAGE_MODEL = "tiny-random-image-slow"  # 500 denoising steps: a call that lasts seconds
IMAGE_UNITS = 100_000  # $0.001 per image in ledger units (1 cent = 1e6)
VIDEO_SECOND_UNITS = 100_000  # $0.001 per video second


def media_catalog() -> Catalog:
    """The built-in catalog's tiny image and video models, plus slow copies of each."""
    default = load_catalog(None)
    image, video = default.get(IMAGE_MODEL), default.get(VIDEO_MODEL)
    assert image is not None
    assert video is not None
    slow = video.model_copy(
        update={"id": SLOW_VIDEO_MODEL, "engine_options": {**video.engine_options, "num_inference_steps": 60}}
    )
    slow_image_options = {**image.engine_options, "num_inference_steps": 500}
    slow_image = image.model_copy(update={"id": SLOW_IMAGE_MODEL, "engine_options": slow_image_options})
    return Catalog(source="media-test", entries=(image, video, slow, slow_image))


_shared: dict[str, ModelRegistry] = {}


async def media_registry() -> ModelRegistry:
    """One registry for the whole test session, whichever module asks first: the tiny pipelines are
    built once and stay resident (pytest would instantiate a session fixture imported into several
    modules once per module)."""
    registry = _shared.get("registry")
    if registry is None:
        registry = _shared["registry"] = ModelRegistry(media_catalog())
        await registry.start()
    return registry


@contextlib.asynccontextmanager
async def media_services(
    settings: Settings,
    registry: ModelRegistry,
    *,
    worker: bool = True,
    keep_data: bool = False,
    **overrides: Any,
) -> AsyncIterator[Services]:
    """Services with the video worker started (unless `worker=False`). On PostgreSQL the tables are
    emptied afterwards, unless `keep_data` (a test that restarts on the same database)."""
    built = await build_services(settings.model_copy(update=overrides), registry=registry)
    if worker:
        await built.videos.start()
    try:
        yield built
    finally:
        if built.database.dialect == "postgresql" and not keep_data:
            await built.videos.stop()
            await empty_tables(built)
        await built.close()


@contextlib.asynccontextmanager
async def sdk_client(services: Services, api_key: str) -> AsyncIterator[openai.AsyncOpenAI]:
    app = create_app(services.settings, services)
    transport = httpx2.ASGITransport(app=app, client=("203.0.113.9", 5555))
    async with (
        httpx2.AsyncClient(transport=transport, base_url="http://testserver") as http,
        openai.AsyncOpenAI(
            api_key=api_key, base_url="http://testserver/v1", http_client=http, max_retries=0
        ) as client,
    ):
        yield client


async def wait_for_status(
    client: httpx2.AsyncClient,
    video_id: str,
    headers: dict[str, str],
    statuses: set[str],
    timeout: float = 120,
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await client.get(f"/v1/videos/{video_id}", headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] in statuses:
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"video {video_id} still {body['status']} after {timeout}s")
        await asyncio.sleep(0.05)


def decode_mp4(data: bytes) -> dict[str, Any]:
    """Codec, size, duration and frame count of an MP4, decoded by PyAV (every frame)."""
    import io

    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        duration = float(container.duration or 0) / av.time_base
        return {
            "codec": stream.codec_context.name,
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "frames": frames,
            "duration": round(duration, 2),
        }
