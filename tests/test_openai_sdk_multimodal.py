"""The official `openai` SDK, unchanged, against the in-process app on the embedded engines:
embeddings (its base64 default and floats), speech, transcriptions in every format, translations,
the speech → transcription round trip, and the SDK's error classes on bad input."""

from __future__ import annotations

import openai
import pytest
from starlette.applications import Starlette

from batchin.core.billing.money import cost_per_million
from batchin.models.embeddings import EmbeddingRunner
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.audio_fixtures import (
    E5,
    MINILM,
    MINILM_PER_1M,
    PIPER,
    SENTENCE,
    WHISPER_BASE,
    WHISPER_TINY_EN,
    normalised,
    sdk_client,
)
from tests.conftest import MakeUser
from tests.text_fixtures import balance_units, logs_of

pytestmark = pytest.mark.slow

TEXTS = ["BatchIn serves embeddings.", "A second sentence, a little longer than the first one."]


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user(credit_cents=1_000)


# -- embeddings --------------------------------------------------------------------------------


async def test_embeddings_by_default_base64_equal_floats(app: Starlette, user: UserCreated) -> None:
    async with sdk_client(app, user.api_key) as client:
        default = await client.embeddings.create(model=MINILM, input=TEXTS)  # the SDK asks for base64
        floats = await client.embeddings.create(model=MINILM, input=TEXTS, encoding_format="float")
    assert [d.index for d in default.data] == [0, 1]
    assert [len(d.embedding) for d in default.data] == [384, 384]
    for decoded, plain in zip(default.data, floats.data, strict=True):
        assert decoded.embedding == plain.embedding
    assert default.model == MINILM
    assert default.usage.prompt_tokens == default.usage.total_tokens == floats.usage.prompt_tokens


async def test_embeddings_usage_and_billing(app: Starlette, user: UserCreated, services: Services) -> None:
    runner = await services.registry.runner(MINILM)
    assert isinstance(runner, EmbeddingRunner)
    tokens = sum(await runner.count_tokens(TEXTS))
    before = await balance_units(services, user)
    async with sdk_client(app, user.api_key) as client:
        result = await client.embeddings.create(model=MINILM, input=TEXTS)
    assert result.usage.prompt_tokens == tokens
    assert before - await balance_units(services, user) == cost_per_million(tokens, MINILM_PER_1M)
    assert len(await logs_of(services, user)) == 1


async def test_embeddings_multilingual_single_string(app: Starlette, user: UserCreated) -> None:
    async with sdk_client(app, user.api_key) as client:
        result = await client.embeddings.create(model=E5, input="¿Dónde está la estación?", dimensions=384)
    assert len(result.data) == 1
    assert len(result.data[0].embedding) == 384


async def test_embeddings_bad_input_raises_bad_request(app: Starlette, user: UserCreated) -> None:
    async with sdk_client(app, user.api_key) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.embeddings.create(model=MINILM, input=[])
        with pytest.raises(openai.BadRequestError) as shortened:
            await client.embeddings.create(model=MINILM, input="x", dimensions=64)
    assert caught.value.status_code == 400
    assert caught.value.param == "input"
    assert shortened.value.param == "dimensions"


# -- audio -------------------------------------------------------------------------------------


async def test_speech_then_transcription_recovers_the_sentence(app: Starlette, user: UserCreated) -> None:
    async with sdk_client(app, user.api_key) as client:
        speech = await client.audio.speech.create(
            model=PIPER, input=SENTENCE, voice="alloy", response_format="mp3"
        )
        assert speech.response.headers["content-type"] == "audio/mpeg"
        audio = speech.read()
        for model in (WHISPER_TINY_EN, WHISPER_BASE):
            transcript = await client.audio.transcriptions.create(model=model, file=("speech.mp3", audio))
            assert normalised(transcript.text) == normalised(SENTENCE), model


async def test_transcription_verbose_json_with_words(app: Starlette, user: UserCreated) -> None:
    async with sdk_client(app, user.api_key) as client:
        audio = (
            await client.audio.speech.create(model=PIPER, input=SENTENCE, voice="echo", response_format="wav")
        ).read()
        verbose = await client.audio.transcriptions.create(
            model=WHISPER_TINY_EN,
            file=("speech.wav", audio, "audio/wav"),
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
            language="en",
            temperature=0,
            prompt="A pangram.",
        )
    assert verbose.language == "en"
    assert verbose.duration > 1.0
    assert verbose.segments is not None
    assert verbose.segments[0].start == 0.0
    assert verbose.words is not None
    assert [normalised(w.word) for w in verbose.words] == normalised(SENTENCE).split()


@pytest.mark.parametrize("fmt", ["text", "srt", "vtt"])
async def test_transcription_text_formats_come_back_as_strings(
    app: Starlette, user: UserCreated, fmt: str
) -> None:
    async with sdk_client(app, user.api_key) as client:
        audio = (
            await client.audio.speech.create(
                model=PIPER, input=SENTENCE, voice="nova", response_format="flac"
            )
        ).read()
        text = await client.audio.transcriptions.create(
            model=WHISPER_TINY_EN,
            file=("speech.flac", audio),
            response_format=fmt,
        )
    assert isinstance(text, str)
    assert normalised(SENTENCE) in normalised(text)


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # SDK 3.51 marks translations.create
async def test_translation(app: Starlette, user: UserCreated) -> None:
    async with sdk_client(app, user.api_key) as client:
        audio = (
            await client.audio.speech.create(
                model=PIPER, input=SENTENCE, voice="onyx", response_format="opus"
            )
        ).read()
        translation = await client.audio.translations.create(model=WHISPER_BASE, file=("speech.ogg", audio))
    assert normalised(translation.text) == normalised(SENTENCE)


async def test_audio_errors_are_the_sdks_classes(app: Starlette, user: UserCreated) -> None:
    async with sdk_client(app, user.api_key) as client:
        with pytest.raises(openai.BadRequestError) as voice:
            await client.audio.speech.create(model=PIPER, input="hi", voice="nobody")
        with pytest.raises(openai.BadRequestError) as garbage:
            await client.audio.transcriptions.create(
                model=WHISPER_TINY_EN, file=("x.wav", b"not audio at all")
            )
        with pytest.raises(openai.NotFoundError):
            await client.audio.transcriptions.create(model="whisper-9000", file=("x.wav", b"RIFF"))
    assert voice.value.param == "voice"
    assert "valid voices: joe, alloy" in voice.value.message
    assert garbage.value.param == "file"
