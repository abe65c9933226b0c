"""Media engines that die mid-call, through the real HTTP app and the real worker processes: a
SIGSEGV in faster-whisper mid-transcription or in the diffusers pipeline mid-render fails only that
call with a 503 in the error envelope, bills and logs nothing, and the next call is served by a
restarted worker while the server's process lives on."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import httpx2
import numpy as np
import pytest

from batchin.config import Settings
from batchin.models.engine_client import EngineClient
from batchin.models.hosted import HostedRunner
from batchin.models.registry import ModelRegistry
from batchin.models.speech import SpeechAudio
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.audio_fixtures import WHISPER_TINY_EN, spoken, wav_bytes
from tests.conftest import MakeUser, assert_error, bearer
from tests.media_fixtures import IMAGE_MODEL, media_registry, media_services
from tests.text_fixtures import asgi_client, balance_units, eventually, logs_of

pytestmark = pytest.mark.slow


async def hosted_worker(registry: ModelRegistry, model: str) -> tuple[HostedRunner, EngineClient]:
    runner = await registry.runner(model)
    assert isinstance(runner, HostedRunner)
    worker = runner.worker
    assert worker is not None
    return runner, worker


async def kill_once_busy(worker: EngineClient, call: asyncio.Task[httpx2.Response]) -> None:
    """SIGSEGV the worker as soon as the call has reached it (and before it answered)."""
    await eventually(lambda: worker.in_flight > 0 or call.done(), timeout=60)
    assert not call.done(), "the call finished before the worker could be killed"
    os.kill(worker.pid, signal.SIGSEGV)


async def assert_lost_and_restarted(
    services: Services,
    user: UserCreated,
    runner: HostedRunner,
    killed: EngineClient,
    response: httpx2.Response,
) -> None:
    assert_error(response, 503, "service_unavailable")
    assert "SIGSEGV" in response.json()["error"]["message"]
    assert await logs_of(services, user) == []
    await eventually(lambda: runner.worker is not None and runner.worker.pid != killed.pid, timeout=60)


async def test_whisper_killed_mid_transcription_fails_that_call_only(
    client: httpx2.AsyncClient, services: Services, model_registry: ModelRegistry, make_user: MakeUser
) -> None:
    user = await make_user()
    voice = await spoken(model_registry)
    # Twenty sentences in a row: decoding lasts long enough to be caught in flight.
    long = SpeechAudio(np.tile(voice.pcm, 20), voice.sample_rate)
    runner, worker = await hosted_worker(model_registry, WHISPER_TINY_EN)
    before, server_pid = await balance_units(services, user), os.getpid()

    call = asyncio.create_task(
        client.post(
            "/v1/audio/transcriptions",
            data={"model": WHISPER_TINY_EN},
            files={"file": ("long.wav", wav_bytes(long), "audio/wav")},
            headers=bearer(user.api_key),
        )
    )
    await kill_once_busy(worker, call)
    await assert_lost_and_restarted(services, user, runner, worker, await call)
    assert await balance_units(services, user) == before
    assert os.getpid() == server_pid

    again = await client.post(
        "/v1/audio/transcriptions",
        data={"model": WHISPER_TINY_EN},
        files={"file": ("short.wav", wav_bytes(voice), "audio/wav")},
        headers=bearer(user.api_key),
    )
    assert again.status_code == 200, again.text
    assert "fox" in again.json()["text"].lower()


@pytest.fixture
async def media(settings: Settings) -> AsyncIterator[Services]:
    async with media_services(settings, await media_registry(), worker=False) as built:
        yield built


async def test_the_image_pipeline_killed_mid_render_fails_that_call_only(
    media: Services, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=1_000)
    runner, worker = await hosted_worker(media.registry, IMAGE_MODEL)
    before = await balance_units(media, user)
    # Large and several: the tiny pipeline draws at the asked size, so this render takes a while.
    body = {"model": IMAGE_MODEL, "prompt": "a lighthouse", "size": "1024x1024", "n": 4}
    async with asgi_client(media) as client:
        call = asyncio.create_task(
            client.post("/v1/images/generations", json=body, headers=bearer(user.api_key))
        )
        await kill_once_busy(worker, call)
        await assert_lost_and_restarted(media, user, runner, worker, await call)
        assert await balance_units(media, user) == before

        small = {"model": IMAGE_MODEL, "prompt": "a lighthouse", "size": "64x64"}
        again = await client.post("/v1/images/generations", json=small, headers=bearer(user.api_key))
    assert again.status_code == 200, again.text
    assert len(again.json()["data"]) == 1
