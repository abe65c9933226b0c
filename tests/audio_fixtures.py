"""Building blocks for embedding and audio tests: the built-in models' ids and prices, speech made
once per session by the packaged Piper voice, an openai SDK client over the in-process app, and
helpers for text normalisation and WAV files.

The engines are the real embedded ones from the session-wide `model_registry` (conftest): each
loads once per test session, on first use.
"""

from __future__ import annotations

import contextlib
import io
import re
import wave
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx2
import numpy as np
import openai
from starlette.applications import Starlette

from batchin.models.registry import ModelRegistry
from batchin.models.speech import SpeechAudio, SpeechRunner

MINILM = "all-MiniLM-L6-v2"
E5 = "multilingual-e5-small"
PIPER = "piper-en-us-joe-medium"
WHISPER_BASE = "whisper-base"
WHISPER_TINY_EN = "whisper-tiny.en"

MINILM_PER_1M = Decimal("0.005")
E5_PER_1M = Decimal("0.01")
PIPER_PER_SECOND = Decimal("0.0001")
WHISPER_BASE_PER_SECOND = Decimal("0.0001")
WHISPER_TINY_PER_SECOND = Decimal("0.00005")

SENTENCE = "The quick brown fox jumps over the lazy dog."

_speech_cache: dict[str, SpeechAudio] = {}


async def spoken(registry: ModelRegistry, text: str = SENTENCE) -> SpeechAudio:
    """`text` spoken by the packaged voice (synthesised once per session per text)."""
    if text not in _speech_cache:
        runner = await registry.runner(PIPER)
        assert isinstance(runner, SpeechRunner)
        _speech_cache[text] = await runner.synthesize(text, voice=runner.default_voice, speed=1.0)
    return _speech_cache[text]


def wav_bytes(audio: SpeechAudio) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(audio.sample_rate)
        out.writeframes(audio.pcm.astype("<i2").tobytes())
    return buffer.getvalue()


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data), "rb") as source:
        assert source.getnchannels() == 1
        assert source.getsampwidth() == 2
        frames = source.readframes(source.getnframes())
        return np.frombuffer(frames, dtype="<i2"), source.getframerate()


def normalised(text: str) -> str:
    """Lower case, punctuation dropped, single spaces: what 'the same sentence' means here."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


@contextlib.asynccontextmanager
async def sdk_client(app: Starlette, api_key: str) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official client, unchanged, talking to the app in process."""
    transport = httpx2.ASGITransport(app=app, client=("203.0.113.9", 5555))
    async with (
        httpx2.AsyncClient(transport=transport, base_url="http://testserver", timeout=300) as http,
        openai.AsyncOpenAI(
            base_url="http://testserver/v1", api_key=api_key, http_client=http, max_retries=0
        ) as client,
    ):
        yield client
