"""/v1/audio/speech, /v1/audio/transcriptions and /v1/audio/translations through the real ASGI app
on the embedded Piper and Whisper models: formats and content types, voices, speed, transcript
formats, the speech → transcription round trip, exact billing, upload limits and refusals."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import numpy as np
import pytest

from batchin.app import build_services, create_app
from batchin.config import Settings
from batchin.core.billing.money import cost_per_unit
from batchin.models.audio_codec import billable_seconds, encode_pcm16
from batchin.models.registry import ModelRegistry
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.audio_fixtures import (
    MINILM,
    PIPER,
    PIPER_PER_SECOND,
    SENTENCE,
    WHISPER_BASE,
    WHISPER_BASE_PER_SECOND,
    WHISPER_TINY_EN,
    WHISPER_TINY_PER_SECOND,
    normalised,
    read_wav,
    spoken,
    wav_bytes,
)
from tests.conftest import MakeUser, assert_error, bearer
from tests.db_reset import empty_tables
from tests.served_receipts import assert_served_receipt
from tests.text_fixtures import balance_units, logs_of

pytestmark = pytest.mark.slow

SHORT = "Hello there."


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user(credit_cents=1_000)


@pytest.fixture
async def speech_wav(model_registry: ModelRegistry) -> bytes:
    return wav_bytes(await spoken(model_registry))


async def speak(client: httpx2.AsyncClient, user: UserCreated, **body: Any) -> httpx2.Response:
    payload = {"model": PIPER, "input": SHORT, "voice": "alloy", **body}
    return await client.post("/v1/audio/speech", json=payload, headers=bearer(user.api_key))


async def transcribe(
    client: httpx2.AsyncClient,
    user: UserCreated,
    audio: bytes,
    *,
    path: str = "/v1/audio/transcriptions",
    filename: str = "speech.wav",
    **fields: Any,
) -> httpx2.Response:
    data = {"model": WHISPER_TINY_EN, **fields}
    return await client.post(
        path,
        data=data,
        files={"file": (filename, audio, "application/octet-stream")},
        headers=bearer(user.api_key),
    )


# -- speech ------------------------------------------------------------------------------------

FORMATS = {
    "mp3": ("audio/mpeg", (b"ID3", b"\xff\xfb", b"\xff\xf3")),
    "opus": ("audio/opus", (b"OggS",)),
    "aac": ("audio/aac", (b"\xff\xf1", b"\xff\xf9")),
    "flac": ("audio/flac", (b"fLaC",)),
    "wav": ("audio/wav", (b"RIFF",)),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
async def test_speech_comes_in_each_format_with_its_content_type(
    client: httpx2.AsyncClient, user: UserCreated, fmt: str
) -> None:
    response = await speak(client, user, response_format=fmt)
    assert response.status_code == 200, response.text
    content_type, magic = FORMATS[fmt]
    assert response.headers["content-type"] == content_type
    assert response.content.startswith(magic)


async def test_pcm_is_headerless_24_khz_16_bit(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await speak(client, user, response_format="pcm")
    assert response.headers["content-type"] == "audio/pcm"
    assert not response.content.startswith(b"RIFF")
    assert len(response.content) % 2 == 0
    assert 0.5 < len(response.content) / 2 / 24_000 < 3.0  # "Hello there." at 24 kHz, 2 bytes a sample


async def test_mp3_is_the_default(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await speak(client, user)
    assert response.headers["content-type"] == "audio/mpeg"


async def test_speed_changes_the_length(client: httpx2.AsyncClient, user: UserCreated) -> None:
    # Piper draws phoneme durations with noise, so lengths vary run to run: compare far-apart speeds.
    slow, _ = read_wav((await speak(client, user, response_format="wav", input=SENTENCE, speed=0.5)).content)
    fast, _ = read_wav((await speak(client, user, response_format="wav", input=SENTENCE, speed=2.0)).content)
    assert len(fast) < len(slow) * 0.5  # nominally a quarter


async def test_a_missing_voice_uses_the_models_default(client: httpx2.AsyncClient, user: UserCreated) -> None:
    body = {"model": PIPER, "input": SHORT, "response_format": "wav"}
    response = await client.post("/v1/audio/speech", json=body, headers=bearer(user.api_key))
    assert response.status_code == 200, response.text


async def test_an_unknown_voice_is_refused_listing_the_valid_ones(
    client: httpx2.AsyncClient, user: UserCreated, services: Services
) -> None:
    error = assert_error(await speak(client, user, voice="darth"), 400, "invalid_request")
    assert error["param"] == "voice"
    assert error["message"] == (
        f"Voice 'darth' is not available for model '{PIPER}'; valid voices: "
        "joe, alloy, ash, ballad, coral, echo, fable, nova, onyx, sage, shimmer, verse."
    )
    assert await logs_of(services, user) == []


async def test_speech_is_billed_per_second_of_audio_with_one_usage_log(
    client: httpx2.AsyncClient, user: UserCreated, services: Services
) -> None:
    before = await balance_units(services, user)
    response = await speak(client, user, response_format="wav", input=SENTENCE)
    samples, rate = read_wav(response.content)
    seconds = billable_seconds(len(samples), rate)
    cost = cost_per_unit(seconds, PIPER_PER_SECOND)
    assert before - await balance_units(services, user) == cost
    [log] = await logs_of(services, user)
    assert (log.model, log.endpoint, log.status) == (PIPER, "audio.speech", "succeeded")
    assert (log.units, log.unit, log.cost_micro_cents) == (seconds, "audio_seconds", cost)


async def test_speech_carries_the_receipt_headers(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await speak(client, user, response_format="wav")
    assert response.headers["traceparent"].startswith("00-")
    assert response.headers["x-batchin-run-id"]
    assert response.headers["x-request-id"].startswith("req_")


async def test_speech_gets_a_served_receipt_and_a_trace(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    response = await speak(client, user, response_format="wav")
    payload = await assert_served_receipt(
        client, response, user.api_key, input_bytes=SHORT.encode(), output_bytes=response.content
    )
    assert (payload["model_id"], payload["unit"]) == (PIPER, "audio_seconds")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": "   "}, "input"),
        ({"input": "x" * 4097}, "input"),
        ({"speed": 0.2}, "speed"),
        ({"speed": 4.5}, "speed"),
        ({"response_format": "ogg"}, "response_format"),
        ({"instructions": "whisper it"}, "instructions"),
        ({"model": MINILM}, "model"),
    ],
)
async def test_bad_speech_requests_are_refused_and_not_billed(
    client: httpx2.AsyncClient, user: UserCreated, services: Services, body: dict[str, Any], param: str
) -> None:
    before = await balance_units(services, user)
    error = assert_error(await speak(client, user, **body), 400, "invalid_request")
    assert error["param"] == param
    assert await balance_units(services, user) == before
    assert await logs_of(services, user) == []


# -- transcription -----------------------------------------------------------------------------


@pytest.mark.parametrize("model", [WHISPER_TINY_EN, WHISPER_BASE])
async def test_speech_round_trips_through_transcription(
    client: httpx2.AsyncClient, user: UserCreated, model: str
) -> None:
    spoken_wav = await speak(client, user, input=SENTENCE, response_format="wav")
    response = await transcribe(client, user, spoken_wav.content, model=model)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert normalised(response.json()["text"]) == normalised(SENTENCE)


@pytest.mark.parametrize(
    ("fmt", "filename"), [("mp3", "speech.mp3"), ("opus", "speech.ogg"), ("flac", "x.flac")]
)
async def test_common_containers_decode(
    client: httpx2.AsyncClient, user: UserCreated, model_registry: ModelRegistry, fmt: Any, filename: str
) -> None:
    audio = await spoken(model_registry)
    encoded = encode_pcm16(audio.pcm, audio.sample_rate, fmt)
    response = await transcribe(client, user, encoded, filename=filename)
    assert response.status_code == 200, response.text
    assert normalised(response.json()["text"]) == normalised(SENTENCE)


async def test_verbose_json_has_segments_and_word_timestamps(
    client: httpx2.AsyncClient, user: UserCreated, speech_wav: bytes
) -> None:
    response = await transcribe(
        client, user, speech_wav, response_format="verbose_json", **{"timestamp_granularities[]": ["word"]}
    )
    body = response.json()
    samples, rate = read_wav(speech_wav)
    duration = billable_seconds(round(len(samples) * 16_000 / rate), 16_000)
    assert (body["task"], body["language"]) == ("transcribe", "en")
    assert body["duration"] == pytest.approx(duration, abs=0.002)
    assert normalised(body["text"]) == normalised(SENTENCE)
    assert [s["id"] for s in body["segments"]] == list(range(len(body["segments"])))
    assert all(0 <= s["start"] < s["end"] <= body["duration"] + 0.05 for s in body["segments"])
    assert [normalised(w["word"]) for w in body["words"]] == normalised(SENTENCE).split()
    assert body["usage"] == {"type": "duration", "seconds": body["duration"]}


async def test_verbose_json_without_word_granularity_has_no_words(
    client: httpx2.AsyncClient, user: UserCreated, speech_wav: bytes
) -> None:
    body = (await transcribe(client, user, speech_wav, response_format="verbose_json")).json()
    assert "words" not in body
    assert body["segments"]


async def test_text_format_is_plain_text(
    client: httpx2.AsyncClient, user: UserCreated, speech_wav: bytes
) -> None:
    response = await transcribe(client, user, speech_wav, response_format="text")
    assert response.headers["content-type"].startswith("text/plain")
    assert normalised(response.text) == normalised(SENTENCE)


async def test_srt_and_vtt_are_subtitles(
    client: httpx2.AsyncClient, user: UserCreated, speech_wav: bytes
) -> None:
    srt = (await transcribe(client, user, speech_wav, response_format="srt")).text
    vtt = await transcribe(client, user, speech_wav, response_format="vtt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:0")
    assert normalised(srt.splitlines()[2]) == normalised(SENTENCE)
    assert vtt.headers["content-type"].startswith("text/vtt")
    assert vtt.text.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:0")


async def test_a_transcription_is_billed_per_second_of_input(
    client: httpx2.AsyncClient, user: UserCreated, services: Services, speech_wav: bytes
) -> None:
    before = await balance_units(services, user)
    body = (await transcribe(client, user, speech_wav, response_format="verbose_json")).json()
    cost = cost_per_unit(body["duration"], WHISPER_TINY_PER_SECOND)
    assert before - await balance_units(services, user) == cost
    [log] = await logs_of(services, user)
    assert (log.model, log.endpoint, log.status) == (WHISPER_TINY_EN, "audio.transcriptions", "succeeded")
    assert (log.units, log.unit, log.cost_micro_cents) == (body["duration"], "audio_seconds", cost)


async def test_a_translation_gives_english_and_is_billed_as_one(
    client: httpx2.AsyncClient, user: UserCreated, services: Services, speech_wav: bytes
) -> None:
    response = await transcribe(
        client,
        user,
        speech_wav,
        path="/v1/audio/translations",
        model=WHISPER_BASE,
        response_format="verbose_json",
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["task"] == "translate"
    assert normalised(body["text"]) == normalised(SENTENCE)
    [log] = await logs_of(services, user)
    assert (log.endpoint, log.cost_micro_cents) == (
        "audio.translations",
        cost_per_unit(body["duration"], WHISPER_BASE_PER_SECOND),
    )


@pytest.mark.parametrize(
    ("path", "model"),
    [("/v1/audio/transcriptions", WHISPER_TINY_EN), ("/v1/audio/translations", WHISPER_BASE)],
)
async def test_a_transcript_gets_a_served_receipt_and_a_trace(
    client: httpx2.AsyncClient, user: UserCreated, speech_wav: bytes, path: str, model: str
) -> None:
    response = await transcribe(client, user, speech_wav, path=path, model=model)
    text = response.json()["text"]
    payload = await assert_served_receipt(
        client, response, user.api_key, input_bytes=speech_wav, output_bytes=text.encode()
    )
    assert (payload["model_id"], payload["unit"]) == (model, "audio_seconds")


async def test_language_is_passed_to_the_model(
    client: httpx2.AsyncClient, user: UserCreated, speech_wav: bytes
) -> None:
    body = (
        await transcribe(
            client, user, speech_wav, model=WHISPER_BASE, language="EN", response_format="verbose_json"
        )
    ).json()
    assert body["language"] == "en"


@pytest.mark.parametrize(
    ("fields", "param", "path"),
    [
        ({"language": "xx"}, "language", "/v1/audio/transcriptions"),
        ({"model": WHISPER_TINY_EN, "language": "de"}, "language", "/v1/audio/transcriptions"),
        ({"model": WHISPER_TINY_EN}, "model", "/v1/audio/translations"),
        ({"model": PIPER}, "model", "/v1/audio/transcriptions"),
        ({"response_format": "docx"}, "response_format", "/v1/audio/transcriptions"),
        ({"temperature": "hot"}, "temperature", "/v1/audio/transcriptions"),
        ({"temperature": "1.5"}, "temperature", "/v1/audio/transcriptions"),
        ({"stream": "true"}, "stream", "/v1/audio/transcriptions"),
        ({"timestamp_granularities[]": ["word"]}, "timestamp_granularities", "/v1/audio/transcriptions"),
    ],
)
async def test_bad_transcription_requests_are_refused_and_not_billed(
    client: httpx2.AsyncClient,
    user: UserCreated,
    services: Services,
    speech_wav: bytes,
    fields: dict[str, Any],
    param: str,
    path: str,
) -> None:
    merged = {"model": WHISPER_BASE, **fields}
    error = assert_error(
        await transcribe(client, user, speech_wav, path=path, **merged), 400, "invalid_request"
    )
    assert error["param"] == param
    assert await logs_of(services, user) == []


@pytest.mark.parametrize("data", [b"", b"definitely not audio " * 50, np.zeros(5000, np.uint8).tobytes()])
async def test_an_undecodable_file_is_400_and_not_billed(
    client: httpx2.AsyncClient, user: UserCreated, services: Services, data: bytes
) -> None:
    before = await balance_units(services, user)
    error = assert_error(await transcribe(client, user, data), 400, "invalid_request")
    assert error["param"] == "file"
    assert error["message"].startswith("The audio file could not be read")
    assert await balance_units(services, user) == before
    assert await logs_of(services, user) == []


async def test_a_form_without_a_file_is_refused(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await client.post(
        "/v1/audio/transcriptions", data={"model": WHISPER_TINY_EN}, files={}, headers=bearer(user.api_key)
    )
    error = assert_error(response, 400, "invalid_request")
    assert error["param"] == "file"


async def test_a_json_body_is_refused_naming_file(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await client.post(
        "/v1/audio/transcriptions", json={"model": WHISPER_TINY_EN}, headers=bearer(user.api_key)
    )
    assert assert_error(response, 400, "invalid_request")["param"] == "file"


# -- upload limit ------------------------------------------------------------------------------


@pytest.fixture
async def small_upload_client(
    settings: Settings, model_registry: ModelRegistry
) -> AsyncIterator[tuple[httpx2.AsyncClient, Services]]:
    built = await build_services(
        settings.model_copy(update={"max_upload_bytes": 64 * 1024}), registry=model_registry
    )
    try:
        transport = httpx2.ASGITransport(app=create_app(built.settings, built), client=("203.0.113.9", 5555))
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client, built
    finally:
        await empty_tables(built)
        await built.close()


async def test_an_upload_over_the_limit_is_413_and_not_billed(
    small_upload_client: tuple[httpx2.AsyncClient, Services], speech_wav: bytes
) -> None:
    client, built = small_upload_client
    user = await built.accounts.create_user("big@example.com", "Big", 1_000)
    assert len(speech_wav) > 64 * 1024
    error = assert_error(await transcribe(client, user, speech_wav), 413, "payload_too_large")
    assert error["param"] == "file"
    assert await logs_of(built, user) == []


async def test_a_streamed_upload_is_cut_off_at_the_limit(
    small_upload_client: tuple[httpx2.AsyncClient, Services], speech_wav: bytes
) -> None:
    client, built = small_upload_client
    user = await built.accounts.create_user("stream@example.com", "Stream", 1_000)
    boundary = "batchinboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{WHISPER_TINY_EN}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    sent: list[int] = []

    async def body() -> AsyncIterator[bytes]:  # no Content-Length: chunked, of unknown size
        yield head
        for _ in range(64):  # 4 MiB offered in 64 KiB chunks
            sent.append(1)
            yield b"\x00" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    response = await client.post(
        "/v1/audio/transcriptions",
        content=body(),
        headers={**bearer(user.api_key), "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert_error(response, 413, "payload_too_large")
    assert "content-length" not in response.request.headers
    assert len(sent) < 64  # the server stopped reading well before the end
    assert await logs_of(built, user) == []


async def test_an_upload_within_the_limit_is_served(
    small_upload_client: tuple[httpx2.AsyncClient, Services], model_registry: ModelRegistry
) -> None:
    client, built = small_upload_client
    user = await built.accounts.create_user("small@example.com", "Small", 1_000)
    audio = await spoken(model_registry)
    mp3 = encode_pcm16(audio.pcm, audio.sample_rate, "mp3")
    assert len(mp3) < 64 * 1024
    response = await transcribe(client, user, mp3, filename="a.mp3")
    assert response.status_code == 200, response.text


# -- the event loop stays free -----------------------------------------------------------------


async def test_a_transcription_never_stalls_the_event_loop(
    client: httpx2.AsyncClient, user: UserCreated, model_registry: ModelRegistry
) -> None:
    """Decoding and the engine run in threads: other requests (a streaming chat) keep being served."""
    audio = wav_bytes(await spoken(model_registry, " ".join([SENTENCE] * 3)))
    loop = asyncio.get_running_loop()
    gaps: list[float] = []

    async def tick() -> None:
        last = loop.time()
        while True:
            await asyncio.sleep(0.01)
            now = loop.time()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        response = await transcribe(client, user, audio, model=WHISPER_BASE)
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
    assert response.status_code == 200, response.text
    assert len(gaps) > 20  # the transcription took a while, and the loop ticked all along
    assert max(gaps) < 0.3, sorted(gaps)[-5:]
