"""The remote media runners (embeddings, speech, transcription, images) and vision pass-through,
against the fake OpenAI-compatible upstream on loopback: what reaches the upstream, what comes
back, errors, failover and cancellation."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import numpy as np
import pytest

from batchin.errors import InvalidRequest, ServiceUnavailable
from batchin.models.base import ChatMessage, ChatParams, ContentPart, SamplingParams
from batchin.models.catalog import CatalogError, parse_catalog
from batchin.models.images import ImageParams
from batchin.models.remote import TOKENS_PER_IMAGE, RemoteRunner
from batchin.models.remote_audio import RemoteSpeechRunner, RemoteTranscriptionRunner
from batchin.models.remote_embeddings import RemoteEmbeddingRunner
from batchin.models.remote_images import RemoteImageRunner
from batchin.models.remote_kinds import build_remote_runner
from batchin.models.transcription import TranscribeParams
from batchin.models.upstream_client import RemoteConfig, UpstreamClient
from tests.fakes.fake_media_upstream import FakeMediaUpstream, start_fake_media_upstream, tone
from tests.fakes.fake_upstream import unused_port

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def upstream() -> Iterator[FakeMediaUpstream]:
    fake = start_fake_media_upstream()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
async def closing() -> AsyncIterator[Callable[[Any], Any]]:
    runners: list[UpstreamClient] = []

    def keep(runner: Any) -> Any:
        runners.append(runner)
        return runner

    yield keep
    for runner in runners:
        await runner.close()


def config(*urls: str, **options: Any) -> RemoteConfig:
    return RemoteConfig(
        model_id="remote-test", base_urls=urls, upstream_model="up-model", health_check_interval=0, **options
    )


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


# -- embeddings --------------------------------------------------------------------------------


async def test_embeddings_come_back_in_input_order_with_the_upstreams_token_count(
    upstream: FakeMediaUpstream, closing: Any
) -> None:
    runner = closing(RemoteEmbeddingRunner(config(upstream.url), {"dimensions": 8}))

    vectors, tokens = await runner.embed_with_usage(["first", "second", "third"])

    assert vectors.shape == (3, 8)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])
    assert tokens == 21  # the fake reports 7 per input
    assert upstream.received.embeddings[-1] == {
        "model": "up-model",
        "input": ["first", "second", "third"],
        "encoding_format": "float",
    }


async def test_embeddings_read_base64_vectors_and_missing_usage(
    upstream: FakeMediaUpstream, closing: Any
) -> None:
    upstream.media.embedding_usage = False
    floats = closing(RemoteEmbeddingRunner(config(upstream.url), {"dimensions": 8}))
    packed = closing(
        RemoteEmbeddingRunner(config(upstream.url), {"dimensions": 8, "encoding_format": "base64"})
    )

    plain, tokens = await floats.embed_with_usage(["same text"])
    decoded, _ = await packed.embed_with_usage(["same text"])

    assert tokens is None
    assert upstream.received.embeddings[-1]["encoding_format"] == "base64"
    assert np.array_equal(plain, decoded)


async def test_embeddings_of_another_size_than_the_catalog_says_are_the_upstreams_failure(
    upstream: FakeMediaUpstream, closing: Any
) -> None:
    runner = closing(RemoteEmbeddingRunner(config(upstream.url), {"dimensions": 1024}))

    with pytest.raises(ServiceUnavailable, match="unreadable answer"):
        await runner.embed(["x"])
    assert runner.health().status == "unavailable"


async def test_a_large_answer_arriving_in_many_pieces_is_read_whole(
    upstream: FakeMediaUpstream, closing: Any
) -> None:
    runner = closing(RemoteEmbeddingRunner(config(upstream.url), {"dimensions": 8}))
    texts = [f"text number {i}" for i in range(4000)]  # ~700 KB of JSON

    vectors, tokens = await runner.embed_with_usage(texts)

    assert vectors.shape == (4000, 8)
    assert tokens == 4000 * 7
    assert runner.health().status == "always_on"


def test_a_remote_embedding_model_must_say_its_dimensions() -> None:
    with pytest.raises(ValueError, match=r"engine_options\.dimensions"):
        RemoteEmbeddingRunner(config("http://127.0.0.1:1/v1"), {})


async def test_connect_failure_fails_over_to_the_next_upstream(
    upstream: FakeMediaUpstream, closing: Any
) -> None:
    dead = f"http://127.0.0.1:{unused_port()}/v1"
    runner = closing(RemoteEmbeddingRunner(config(dead, upstream.url), {"dimensions": 8}))

    for _ in range(2):  # round robin starts once at each
        assert (await runner.embed(["x"])).shape == (1, 8)
    assert runner.health().extra == {"upstreams": 2, "upstreams_healthy": 1}


# -- speech ------------------------------------------------------------------------------------


async def test_speech_streams_the_upstreams_audio_bytes_through(
    upstream: FakeMediaUpstream, closing: Any
) -> None:
    upstream.config.delay_ms = 5
    runner = closing(RemoteSpeechRunner(config(upstream.url), {"voices": {"alloy": "中文女"}}))

    chunks = [
        c
        async for c in runner.stream_speech(
            "Hello there, listener.", voice="alloy", speed=1.0, response_format="wav"
        )
    ]

    assert len(chunks) > 1
    assert b"".join(chunks) == tone(22 * 0.02, "wav")
    assert upstream.received.speech[-1] == {
        "model": "up-model",
        "input": "Hello there, listener.",
        "voice": "中文女",
        "response_format": "wav",
        "speed": 1.0,
    }


async def test_closing_the_speech_stream_early_closes_the_upstream_request(
    upstream: FakeMediaUpstream, closing: Any
) -> None:
    upstream.config.delay_ms = 50
    upstream.media.speech_chunk_bytes = 256
    runner = closing(RemoteSpeechRunner(config(upstream.url), {"voices": ["alloy"]}))

    audio = runner.stream_speech("a long text " * 20, voice="alloy", speed=1.0, response_format="pcm")
    async with contextlib.aclosing(audio):
        await anext(audio)

    await eventually(lambda: upstream.stats.streams_cancelled == 1)
    assert upstream.stats.streams_completed == 0


async def test_speech_refused_upstream_raises_before_any_audio(
    upstream: FakeMediaUpstream, closing: Any
) -> None:
    upstream.config.error_status = 400
    upstream.config.error_message = "voice not found"
    runner = closing(RemoteSpeechRunner(config(upstream.url), {"voices": ["alloy"]}))

    audio = runner.stream_speech("hi", voice="alloy", speed=1.0, response_format="mp3")
    with pytest.raises(InvalidRequest) as caught:
        await anext(audio)

    assert (
        caught.value.message
        == "The upstream of model remote-test refused the request (HTTP 400): voice not found"
    )


def test_speech_voices_and_default_come_from_the_catalog() -> None:
    runner = RemoteSpeechRunner(
        config("http://127.0.0.1:1/v1"), {"voices": {"alloy": "a", "nova": "n"}, "default_voice": "nova"}
    )
    assert (runner.voices, runner.default_voice, runner.pcm_sample_rate) == (("alloy", "nova"), "nova", 24000)
    with pytest.raises(ValueError, match="voices"):
        RemoteSpeechRunner(config("http://127.0.0.1:1/v1"), {})


# -- transcription -----------------------------------------------------------------------------


async def test_transcription_passes_the_upload_through_and_reads_segments_and_words(
    upstream: FakeMediaUpstream, closing: Any
) -> None:
    runner = closing(RemoteTranscriptionRunner(config(upstream.url), {}))
    audio = tone(1.0, "flac")
    params = TranscribeParams(task="transcribe", language="de", prompt="Names: Ada", word_timestamps=True)

    transcript = await runner.transcribe_file(audio, "talk.flac", params, seconds=1.0)

    received = upstream.received.transcriptions[-1]
    assert (received["path"], received["filename"], received["file"]) == (
        "/v1/audio/transcriptions",
        "talk.flac",
        audio,
    )
    assert sorted(received["fields"]) == sorted(
        [
            ("model", "up-model"),
            ("response_format", "verbose_json"),
            ("temperature", "0.0"),
            ("language", "de"),
            ("prompt", "Names: Ada"),
            ("timestamp_granularities[]", "segment"),
            ("timestamp_granularities[]", "word"),
        ]
    )
    assert transcript.text == "the fake upstream heard you"
    assert transcript.language == "english"
    assert [(s.start, s.end, s.text) for s in transcript.segments] == [
        (0.0, 0.8, " the fake"),
        (0.8, 1.5, " upstream heard you"),
    ]
    assert [[w.word for w in s.words] for s in transcript.segments] == [
        ["the", "fake", "upstream"],  # "upstream" starts at 0.6, inside the first segment
        ["heard", "you"],
    ]


async def test_a_json_only_upstream_gives_one_segment_as_long_as_the_audio(
    upstream: FakeMediaUpstream, closing: Any
) -> None:
    runner = closing(RemoteTranscriptionRunner(config(upstream.url), {"response_format": "json"}))

    transcript = await runner.transcribe_file(
        b"audio", "a.wav", TranscribeParams(task="translate"), seconds=2.5
    )

    received = upstream.received.transcriptions[-1]
    assert received["path"] == "/v1/audio/translations"
    assert ("response_format", "json") in received["fields"]
    assert not any(name == "timestamp_granularities[]" for name, _ in received["fields"])
    assert [(s.start, s.end, s.text) for s in transcript.segments] == [(0.0, 2.5, transcript.text)]


def test_transcription_languages_come_from_the_catalog() -> None:
    open_runner = RemoteTranscriptionRunner(config("http://127.0.0.1:1/v1"), {})
    listed = RemoteTranscriptionRunner(config("http://127.0.0.1:1/v1"), {"languages": ["EN", "de"]})
    english = RemoteTranscriptionRunner(config("http://127.0.0.1:1/v1"), {"english_only": True})
    assert open_runner.languages == frozenset()  # the upstream decides
    assert listed.languages == frozenset({"en", "de"})
    assert (english.english_only, english.languages) == (True, frozenset({"en"}))


# -- images ------------------------------------------------------------------------------------


@pytest.mark.parametrize("response_format", ["b64_json", "url"])
async def test_images_come_back_as_bytes_whether_the_upstream_inlines_or_links_them(
    upstream: FakeMediaUpstream, closing: Any, response_format: str
) -> None:
    runner = closing(RemoteImageRunner(config(upstream.url), {"response_format": response_format}))

    images = await runner.generate(ImageParams(prompt="a red fox", width=64, height=32, n=2, seed=1))

    assert len(images) == 2
    assert all(image.startswith(PNG_MAGIC) for image in images)
    assert upstream.received.images[-1] == {
        "model": "up-model",
        "prompt": "a red fox",
        "n": 2,
        "size": "64x32",
        "response_format": response_format,
    }
    if response_format == "url":  # our key goes to the upstream's API, never to its image links
        assert "authorization" not in upstream.received.headers[-1]


async def test_an_image_over_the_size_limit_is_the_upstreams_failure(
    upstream: FakeMediaUpstream, closing: Any
) -> None:
    runner = closing(
        RemoteImageRunner(config(upstream.url), {"response_format": "url", "max_image_bytes": 100})
    )

    with pytest.raises(ServiceUnavailable, match="over 100 bytes"):
        await runner.generate(ImageParams(prompt="big", width=64, height=64))


async def test_cancelling_an_image_call_closes_the_upstream_request(
    upstream: FakeMediaUpstream, closing: Any
) -> None:
    upstream.media.image_delay_ms = 5000
    runner = closing(RemoteImageRunner(config(upstream.url), {}))

    task = asyncio.ensure_future(runner.generate(ImageParams(prompt="slow", width=8, height=8)))
    await eventually(lambda: len(upstream.received.images) == 1)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    await eventually(lambda: upstream.received.images_cancelled == 1)


async def test_an_upstream_answering_fewer_images_than_asked_is_its_failure(
    upstream: FakeMediaUpstream, closing: Any
) -> None:
    runner = closing(RemoteImageRunner(config(upstream.url, api_key="sk-up"), {}))
    upstream.config.error_status = 500

    with pytest.raises(ServiceUnavailable, match=r"failed \(HTTP 500\)"):
        await runner.generate(ImageParams(prompt="x", width=8, height=8))
    assert upstream.received.headers[-1]["authorization"] == "Bearer sk-up"


# -- vision ------------------------------------------------------------------------------------


async def test_image_parts_reach_the_upstream_as_openai_content_parts(
    upstream: FakeMediaUpstream, closing: Any
) -> None:
    runner = closing(RemoteRunner(config(upstream.url, context_length=8192)))
    parts = (
        ContentPart("text", text="What is in this picture?"),
        ContentPart("image_url", url="data:image/png;base64,iVBORw0KGgo=", detail="low"),
        ContentPart("image_url", url="https://example.com/fox.jpg"),
    )
    message = ChatMessage("user", "What is in this picture?", parts=parts)
    plain = await runner.prepare_chat(ChatParams((ChatMessage("user", message.content),), SamplingParams(8)))

    prepared = await runner.prepare_chat(ChatParams((message,), SamplingParams(max_tokens=8)))
    deltas = [d async for d in runner.generate(prepared)]

    assert prepared.prompt_tokens == plain.prompt_tokens + 2 * TOKENS_PER_IMAGE
    assert deltas[-1].finish_reason is not None
    assert upstream.stats.last_body is not None
    assert upstream.stats.last_body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
                },
                {"type": "image_url", "image_url": {"url": "https://example.com/fox.jpg"}},
            ],
        }
    ]


# -- the engine's kinds in the catalog ---------------------------------------------------------

ENTRY = """
[models.m]
kind = {kind}
engine = "remote"
licence = "MIT"
engine_options = {options}
[models.m.upstream]
urls = ["http://127.0.0.1:9/v1"]
model = "up"
[models.m.pricing]
input_per_1m = 1
output_per_1m = 1
per_audio_second = 1
per_image = 1
per_video_second = 1
"""


@pytest.mark.parametrize(
    ("kind", "options", "runner_class"),
    [
        ('["embedding"]', "{ dimensions = 4 }", RemoteEmbeddingRunner),
        ('["speech"]', '{ voices = ["alloy"] }', RemoteSpeechRunner),
        ('["transcription"]', "{}", RemoteTranscriptionRunner),
        ('["image"]', "{}", RemoteImageRunner),
    ],
)
async def test_engine_remote_builds_the_runner_of_the_entrys_kind(
    kind: str, options: str, runner_class: type
) -> None:
    catalog = parse_catalog(ENTRY.format(kind=kind, options=options), source="test")

    runner = build_remote_runner(catalog.entries[0])
    try:
        assert type(runner) is runner_class
        assert runner.config.upstream_model == "up"
    finally:
        await runner.close()


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ('["video"]', "engine 'remote' does not serve kind 'video'"),
        ('["chat", "embedding"]', "a remote 'embedding' model serves that kind only"),
    ],
)
def test_the_catalog_refuses_what_engine_remote_cannot_serve(kind: str, problem: str) -> None:
    with pytest.raises(CatalogError, match=problem):
        parse_catalog(ENTRY.format(kind=kind, options="{}"), source="test")


def test_vision_is_only_for_remote_chat_models() -> None:
    local = """
[models.m]
kind = "chat"
engine = "llama_cpp"
licence = "MIT"
context_length = 8
capabilities = ["vision"]
[models.m.pricing]
input_per_1m = 1
output_per_1m = 1
"""
    with pytest.raises(CatalogError, match="capability 'vision' needs kind 'chat' and engine 'remote'"):
        parse_catalog(local, source="test")
