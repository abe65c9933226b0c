"""Embeddings, transcriptions and translations from the embedded engines, validated against OpenAI's
published OpenAPI document (tests/openai_reference.py).

Two places where that document disagrees with OpenAI's own API, and so with us:
- base64 embeddings: the schema types `embedding` as an array of numbers, but with
  `encoding_format: "base64"` (what the openai SDK asks for by default) it is a string;
- verbose transcripts: the 200 body is a `oneOf` whose plain JSON branch (only `text` required)
  also matches every verbose transcript, so no verbose_json body OpenAI sends can pass the `oneOf`;
  we check it against its own branch, CreateTranscriptionResponseVerboseJson.
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from batchin.models.registry import ModelRegistry
from batchin.protocol.accounts import UserCreated
from tests.audio_fixtures import MINILM, WHISPER_BASE, WHISPER_TINY_EN, spoken, wav_bytes
from tests.conftest import MakeUser, bearer
from tests.openai_reference import component, response_schema, violations

pytestmark = pytest.mark.slow


@pytest.fixture
def backend() -> str:
    return "sqlite"  # response shapes do not depend on the store


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user(credit_cents=1_000)


@pytest.fixture
async def speech_wav(model_registry: ModelRegistry) -> bytes:
    return wav_bytes(await spoken(model_registry))


async def post(client: httpx2.AsyncClient, user: UserCreated, path: str, **kwargs: Any) -> Any:
    response = await client.post(path, headers=bearer(user.api_key), **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("texts", ["one text", ["one", "two"]])
async def test_float_embeddings(
    client: httpx2.AsyncClient, user: UserCreated, texts: str | list[str]
) -> None:
    body = await post(client, user, "/v1/embeddings", json={"model": MINILM, "input": texts})
    assert violations(body, response_schema("/embeddings", "post")) == []


async def test_base64_embeddings_differ_only_where_openai_does(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    payload = {"model": MINILM, "input": ["one", "two"], "encoding_format": "base64"}
    body = await post(client, user, "/v1/embeddings", json=payload)
    problems = violations(body, response_schema("/embeddings", "post"))
    assert problems == [f"data/{i}/embedding: <value> is not of type 'array'" for i in range(2)]


async def transcribe(
    client: httpx2.AsyncClient, user: UserCreated, audio: bytes, path: str, **fields: Any
) -> Any:
    return await post(client, user, path, data=fields, files={"file": ("speech.wav", audio, "audio/wav")})


async def test_json_transcript(client: httpx2.AsyncClient, user: UserCreated, speech_wav: bytes) -> None:
    body = await transcribe(client, user, speech_wav, "/v1/audio/transcriptions", model=WHISPER_TINY_EN)
    assert violations(body, response_schema("/audio/transcriptions", "post")) == []


@pytest.mark.parametrize("granularities", [[], ["word"], ["word", "segment"]])
async def test_verbose_transcript(
    client: httpx2.AsyncClient, user: UserCreated, speech_wav: bytes, granularities: list[str]
) -> None:
    fields = {
        "model": WHISPER_TINY_EN,
        "response_format": "verbose_json",
        "timestamp_granularities[]": granularities,
    }
    body = await transcribe(client, user, speech_wav, "/v1/audio/transcriptions", **fields)
    assert violations(body, component("CreateTranscriptionResponseVerboseJson")) == []
    [quirk] = violations(body, response_schema("/audio/transcriptions", "post"))
    assert quirk.startswith("<root>: <value> is valid under each of"), quirk  # the oneOf in the docstring
    assert ("words" in body) == ("word" in granularities)


@pytest.mark.parametrize("response_format", ["json", "verbose_json"])
async def test_translation(
    client: httpx2.AsyncClient, user: UserCreated, speech_wav: bytes, response_format: str
) -> None:
    fields = {"model": WHISPER_BASE, "response_format": response_format}
    body = await transcribe(client, user, speech_wav, "/v1/audio/translations", **fields)
    name = (
        "CreateTranslationResponseJson"
        if response_format == "json"
        else "CreateTranslationResponseVerboseJson"
    )
    assert violations(body, component(name)) == []
