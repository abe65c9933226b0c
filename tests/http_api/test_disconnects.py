"""A client that hangs up mid-call, per modality, against a live server (uvicorn on a loopback port,
a real HTTP client whose request is abandoned while the engine works): the cancel reaches the
engine's worker, which stops the work and reports it stopped; the reservation goes back whole, the
call is logged `cancelled` at no cost, and the same model serves the next call."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx2
import numpy as np
import pytest
from sqlalchemy import func, select

from batchin.app import create_app
from batchin.config import Settings
from batchin.models.hosted import HostedRunner
from batchin.models.registry import ModelRegistry
from batchin.models.speech import SpeechAudio
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from batchin.store.tables import reservations
from tests.audio_fixtures import MINILM, PIPER, SENTENCE, WHISPER_TINY_EN, spoken, wav_bytes
from tests.conftest import MakeUser, bearer
from tests.live_app import served_on_loopback
from tests.media_fixtures import SLOW_IMAGE_MODEL, media_registry, media_services
from tests.text_fixtures import balance_units, eventually, logs_of

pytestmark = pytest.mark.slow

_LONG = "BatchIn measures how long a call takes and what it costs; " * 10  # ~130 tokens
_WAIT = 300.0  # generous: the engines share two busy cores with the rest of the suite


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user(credit_cents=10_000)


@pytest.fixture(scope="session")
async def image_registry() -> ModelRegistry:
    return await media_registry()


async def disconnect_then_call_again(
    services: Services,
    user: UserCreated,
    model: str,
    path: str,
    long_call: dict[str, Any],
    short_call: dict[str, Any],
) -> httpx2.Response:
    """Hang up on `long_call` while its engine works on it; checks what a caller who left must find;
    returns the answer to `short_call`, made next on the same model."""
    runner = await services.registry.runner(model)
    assert isinstance(runner, HostedRunner)
    before = await balance_units(services, user)
    pool = f"shared/{model}"

    def engine_busy() -> bool:
        worker = runner.worker
        running = services.admission.snapshot().get(pool, {}).get("running", 0)
        # The slot is held and a call is at the worker: the engine call itself (the token count of
        # an embedding call goes to the worker before admission, without the slot).
        return running == 1 and worker is not None and worker.in_flight == 1

    def engine_idle() -> bool:
        worker = runner.worker
        running = services.admission.snapshot().get(pool, {}).get("running", 0)
        return running == 0 and worker is not None and worker.in_flight == 0

    worker = runner.worker
    assert worker is not None
    stopped_before = worker.calls_stopped
    app = create_app(services.settings, services)
    async with (
        served_on_loopback(app) as base,
        httpx2.AsyncClient(base_url=base, headers=bearer(user.api_key), timeout=_WAIT) as http,
    ):
        call = asyncio.ensure_future(http.post(path, **long_call))
        await eventually(lambda: engine_busy() or call.done(), timeout=_WAIT)
        assert not call.done(), "the call ended before the client could hang up: make it longer"
        call.cancel()  # the client abandons the request: httpx closes the connection
        with contextlib.suppress(asyncio.CancelledError):
            await call
        # The worker says the engine has stopped the work (its "stopped" reply), the slot is free.
        await eventually(engine_idle, timeout=_WAIT)
        assert runner.worker is worker
        assert worker.calls_stopped == stopped_before + 1  # the cancel reached the engine's worker
        logs = await _logs_once_written(services, user)
        assert [(log.status, log.model, log.cost_micro_cents) for log in logs] == [("cancelled", model, 0)]
        assert await balance_units(services, user) == before
        assert await _held_reservations(services, user) == 0
        return await http.post(path, **short_call)


async def _logs_once_written(services: Services, user: UserCreated) -> list[Any]:
    deadline = asyncio.get_running_loop().time() + _WAIT
    while not (logs := await logs_of(services, user)):
        assert asyncio.get_running_loop().time() < deadline, "no usage log for the cancelled call"
        await asyncio.sleep(0.05)
    return logs


async def _held_reservations(services: Services, user: UserCreated) -> int:
    query = select(func.count()).where(reservations.c.user_id == user.id, reservations.c.status == "held")
    async with services.database.read() as conn:
        return int(await conn.scalar(query) or 0)


async def test_a_disconnect_mid_embedding_stops_it_and_charges_nothing(
    services: Services, user: UserCreated
) -> None:
    texts = [f"{i}. {_LONG}" for i in range(1000)]
    answer = await disconnect_then_call_again(
        services,
        user,
        MINILM,
        "/v1/embeddings",
        long_call={"json": {"model": MINILM, "input": texts}},
        short_call={"json": {"model": MINILM, "input": "one more"}},
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["data"]) == 1


async def test_a_disconnect_mid_speech_stops_it_and_charges_nothing(
    services: Services, user: UserCreated
) -> None:
    text = " ".join(f"Sentence number {i} of a long reading, spoken slowly." for i in range(70))
    answer = await disconnect_then_call_again(
        services,
        user,
        PIPER,
        "/v1/audio/speech",
        long_call={"json": {"model": PIPER, "input": text[:4096], "response_format": "wav"}},
        short_call={"json": {"model": PIPER, "input": "Hello.", "response_format": "wav"}},
    )
    assert answer.status_code == 200, answer.text
    assert answer.content.startswith(b"RIFF")


async def test_a_disconnect_mid_transcription_stops_it_and_charges_nothing(
    services: Services, user: UserCreated
) -> None:
    speech = await spoken(services.registry, SENTENCE)
    long_audio = wav_bytes(SpeechAudio(np.tile(speech.pcm, 40), speech.sample_rate))  # ~2 minutes
    form = {"model": WHISPER_TINY_EN}
    answer = await disconnect_then_call_again(
        services,
        user,
        WHISPER_TINY_EN,
        "/v1/audio/transcriptions",
        long_call={"data": form, "files": {"file": ("long.wav", long_audio, "audio/wav")}},
        short_call={"data": form, "files": {"file": ("short.wav", wav_bytes(speech), "audio/wav")}},
    )
    assert answer.status_code == 200, answer.text
    assert "fox" in answer.json()["text"].lower()


async def test_a_disconnect_mid_image_stops_it_and_charges_nothing(
    settings: Settings, image_registry: ModelRegistry
) -> None:
    async with media_services(settings, image_registry, worker=False) as services:
        user = await services.accounts.create_user("leaves@example.com", "Leaves", 10_000)
        body = {"model": SLOW_IMAGE_MODEL, "prompt": "a harbour", "response_format": "b64_json"}
        answer = await disconnect_then_call_again(
            services,
            user,
            SLOW_IMAGE_MODEL,
            "/v1/images",
            long_call={"json": {**body, "n": 4}},
            short_call={"json": {**body, "n": 1}},
        )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["data"]) == 1
