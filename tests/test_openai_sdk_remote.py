"""The official `openai` SDK against a live `batchin serve` whose catalog is examples/seed-catalog.toml
(its upstream URLs pointed at the fake OpenAI-compatible upstream, tests/fakes/fake_media_upstream.py)
plus remote entries for embeddings, transcription and images: every seed model called, every
modality through engine "remote", image parts passed to a vision upstream, upstream failures in our
error envelope, and receipts and traces for each call."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import orjson
import pytest

from tests.fakes.fake_media_upstream import FakeMediaUpstream, start_fake_media_upstream, tone
from tests.fakes.fake_upstream import unused_port
from tests.live_server import LiveServer, live_server
from tests.served_receipts import assert_served_receipt, sha256_ref

pytestmark = pytest.mark.slow

SEED_CATALOG = Path(__file__).resolve().parents[1] / "examples" / "seed-catalog.toml"
LLMS = {"qwen3-32b": "Qwen/Qwen3-32B", "qwen3.5-27b": "Qwen/Qwen3.5-27B", "glm-5.1": "zai-org/GLM-5.1"}
# Seed models that run from weights on this machine's GPU: none are here, so none is served (and
# none is answered by another model under its name).
FROM_WEIGHTS = ("bge-m3", "whisper-large-v3-turbo", "flux-schnell", "wan-2.2")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COSYVOICE_KEY = "sk-cosyvoice-upstream-secret"

EXTRA = """
[models.remote-embed]
kind = "embedding"
engine = "remote"
licence = "MIT"
status = "always_on"
engine_options = {{ dimensions = 8, health_check_interval = 0.3 }}
[models.remote-embed.upstream]
urls = ["{url}"]
model = "BAAI/bge-m3"
[models.remote-embed.pricing]
input_per_1m = 0.5

[models.remote-whisper]
kind = "transcription"
engine = "remote"
licence = "MIT"
status = "always_on"
engine_options = {{ health_check_interval = 0.3 }}
[models.remote-whisper.upstream]
urls = ["{url}"]
model = "whisper-large-v3-turbo"
[models.remote-whisper.pricing]
per_audio_second = 0.001

[models.remote-images]
kind = "image"
engine = "remote"
licence = "Apache-2.0"
engine_options = {{ response_format = "url", health_check_interval = 0.3 }}
[models.remote-images.upstream]
urls = ["{url}"]
model = "black-forest-labs/FLUX.1-schnell"
timeout_seconds = 300
[models.remote-images.pricing]
per_image = 0.003

[models.remote-down]
kind = "embedding"
engine = "remote"
licence = "MIT"
status = "always_on"
engine_options = {{ dimensions = 8 }}
[models.remote-down.upstream]
urls = ["{dead}"]
model = "nobody"
[models.remote-down.pricing]
input_per_1m = 0.5
"""


def seed_catalog_at(url: str) -> str:
    """The seed catalog as shipped, each upstream URL list replaced by the fake's."""
    text = SEED_CATALOG.read_text()
    served, count = re.subn(r"(?m)^urls = \[.*\]$", f'urls = ["{url}"]', text)
    assert count == 4  # the three LLMs and CosyVoice
    return served


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeMediaUpstream]:
    fake = start_fake_media_upstream(tokens=4)
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, upstream: FakeMediaUpstream) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("remote-live")
    catalog = data / "models.toml"
    dead = f"http://127.0.0.1:{unused_port()}/v1"
    catalog.write_text(seed_catalog_at(upstream.url) + EXTRA.format(url=upstream.url, dead=dead))
    with live_server(data, {"BATCHIN_MODELS": str(catalog), "COSYVOICE_API_KEY": COSYVOICE_KEY}) as server:
        yield server


@pytest.fixture
def fresh(live: LiveServer, upstream: FakeMediaUpstream) -> Iterator[FakeMediaUpstream]:
    """The fake with its failure switches and pacing back to normal after the test, and every
    model it serves healthy again (an upstream 5xx marks it unhealthy until its next check)."""
    yield upstream
    upstream.config.error_status = None
    upstream.config.error_message = "fake upstream error"
    upstream.config.retry_after = None
    upstream.config.delay_ms = 0
    upstream.media.speech_chunk_bytes = 2048
    upstream.media.image_delay_ms = 0
    deadline = time.monotonic() + 10
    while any(
        m["status"] == "unavailable" and m["id"] != "remote-down"
        for m in httpx2.get(f"{live.base_url}/v1/models", timeout=10).json()["data"]
    ):
        assert time.monotonic() < deadline, "a model stayed unavailable after its upstream recovered"
        time.sleep(0.1)


def log_of(live: LiveServer, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # usage logs may be written just after the response
        for log in live.usage_logs():
            if log["request_id"] == request_id:
                return log
        time.sleep(0.05)
    raise AssertionError(f"no usage log for {request_id}")


# -- the seed catalog --------------------------------------------------------------------------


def test_the_model_list_has_the_seed_names_served_here_and_no_others(live: LiveServer) -> None:
    models = httpx2.get(f"{live.base_url}/v1/models", timeout=10).json()["data"]
    cards = {m["id"]: m for m in models}

    seeds = {*LLMS, *LLMS.values(), "cosyvoice", "FunAudioLLM/CosyVoice2-0.5B"}
    assert set(cards) == seeds | {"remote-embed", "remote-whisper", "remote-images", "remote-down"}
    # A remote chat model: the engine's text features, plus vision where the catalog says so.
    assert cards["qwen3.5-27b"]["capabilities"] == ["json_schema", "penalties", "tools", "vision"]
    assert cards["qwen3-32b"]["capabilities"] == ["json_schema", "penalties", "tools"]
    assert cards["cosyvoice"]["kind"] == ["speech"]
    assert cards["remote-down"]["status"] == "unavailable"


@pytest.mark.parametrize("model", FROM_WEIGHTS)
def test_seed_models_without_their_weights_are_not_answered_by_anything(live: LiveServer, model: str) -> None:
    with live.client() as client, pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve(model)
    assert caught.value.status_code == 404


@pytest.mark.parametrize(("model", "upstream_model"), [*LLMS.items(), ("Qwen/Qwen3-32B", "Qwen/Qwen3-32B")])
def test_each_seed_llm_answers_through_its_upstream(
    live: LiveServer, fresh: FakeMediaUpstream, model: str, upstream_model: str
) -> None:
    with live.client() as client:
        completion = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Say hi"}], max_tokens=16
        )
    assert completion.choices[0].message.content == "tok0 tok1 tok2 tok3 "
    assert completion.model == (model if model in LLMS else "qwen3-32b")  # an alias names its model
    assert fresh.stats.last_body is not None
    assert fresh.stats.last_body["model"] == upstream_model


def test_a_seed_llm_streams(live: LiveServer, fresh: FakeMediaUpstream) -> None:
    with live.client() as client:
        stream = client.chat.completions.create(
            model="glm-5.1",
            messages=[{"role": "user", "content": "Count"}],
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "tok0 tok1 tok2 tok3 "
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


def test_cosyvoice_streams_the_upstreams_audio(live: LiveServer, fresh: FakeMediaUpstream) -> None:
    text = "BatchIn relays this audio as it arrives."
    fresh.config.delay_ms = 2
    with (
        live.client() as client,
        client.audio.speech.with_streaming_response.create(
            model="cosyvoice", voice="alloy", input=text, response_format="wav"
        ) as response,
    ):
        audio = response.read()
        headers = response.headers

    assert audio == tone(len(text) * 0.02, "wav")
    assert headers["content-type"] == "audio/wav"
    assert headers.get("transfer-encoding") == "chunked"
    assert fresh.received.speech[-1]["voice"] == "英文女"
    assert fresh.received.speech[-1]["model"] == "CosyVoice2-0.5B"
    assert fresh.received.headers[-1]["authorization"] == f"Bearer {COSYVOICE_KEY}"
    log = log_of(live, headers["x-request-id"])
    assert (log["status"], log["unit"], log["units"]) == ("succeeded", "audio_seconds", 0.8)


def test_speech_in_the_default_voice_and_mp3(live: LiveServer, fresh: FakeMediaUpstream) -> None:
    with live.client() as client:
        audio = client.audio.speech.create(model="cosyvoice", voice="", input="你好世界").read()
    assert audio[:3] == b"ID3" or audio[0] == 0xFF
    assert fresh.received.speech[-1]["voice"] == "中文女"
    assert fresh.received.speech[-1]["response_format"] == "mp3"


def test_an_unknown_voice_is_refused_before_the_upstream(live: LiveServer, fresh: FakeMediaUpstream) -> None:
    before = len(fresh.received.speech)
    with live.client() as client, pytest.raises(openai.BadRequestError) as caught:
        client.audio.speech.create(model="cosyvoice", voice="shimmer", input="hi")
    assert caught.value.body["param"] == "voice"  # type: ignore[index]
    assert "alloy, echo, nova, onyx" in caught.value.message
    assert len(fresh.received.speech) == before


def test_speech_left_early_closes_the_upstream_and_charges_what_was_sent(
    live: LiveServer, fresh: FakeMediaUpstream
) -> None:
    fresh.config.delay_ms = 40
    fresh.media.speech_chunk_bytes = 512
    cancelled = fresh.stats.streams_cancelled
    with httpx2.stream(
        "POST",
        f"{live.base_url}/v1/audio/speech",
        json={"model": "cosyvoice", "input": "long " * 200, "response_format": "pcm"},
        headers={"Authorization": f"Bearer {live.api_key}"},
        timeout=30,
    ) as response:
        first = next(response.iter_raw())
        request_id = response.headers["x-request-id"]
    assert first

    log = log_of(live, request_id)
    assert log["status"] == "cancelled"
    assert 0 < log["units"] < 1000 * 0.02  # paid for part of the audio, not all of it
    deadline = time.monotonic() + 10
    while fresh.stats.streams_cancelled == cancelled:
        assert time.monotonic() < deadline, "the upstream never saw the caller leave"
        time.sleep(0.05)


# -- the other modalities through engine "remote" ---------------------------------------------


def test_embeddings_bill_the_tokens_the_upstream_counted(live: LiveServer, fresh: FakeMediaUpstream) -> None:
    with live.client() as client:
        raw = client.embeddings.with_raw_response.create(model="remote-embed", input=["one", "two"])
    result = raw.parse()
    assert [len(d.embedding) for d in result.data] == [8, 8]
    assert result.usage.prompt_tokens == 14  # the fake's count, 7 per input
    assert fresh.received.embeddings[-1]["input"] == ["one", "two"]
    log = log_of(live, raw.headers["x-request-id"])
    assert (log["input_tokens"], log["cost_micro_cents"]) == (14, 700)  # 14 tokens at $0.50 / 1M


@pytest.mark.parametrize("response_format", ["json", "text", "srt", "vtt", "verbose_json"])
def test_transcriptions_pass_the_upload_through_in_every_format(
    live: LiveServer, fresh: FakeMediaUpstream, response_format: Any
) -> None:
    audio = tone(1.0, "wav")
    with live.client() as client:
        result: Any = client.audio.transcriptions.create(
            model="remote-whisper", file=("meeting.wav", audio), response_format=response_format
        )
    received = fresh.received.transcriptions[-1]
    assert (received["filename"], received["file"]) == ("meeting.wav", audio)
    text = "the fake upstream heard you"
    if response_format == "json":
        assert result.text == text
    elif response_format == "text":
        assert result.strip() == text
    elif response_format == "srt":
        assert result.startswith("1\n00:00:00,000 --> 00:00:00,800\nthe fake\n")
    elif response_format == "vtt":
        assert result.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:00.800\nthe fake\n")
    else:
        assert (result.language, result.duration, result.text) == ("english", 1.0, text)
        assert [s.end for s in result.segments] == [0.8, 1.5]


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # SDK 3.51 marks translations.create
def test_translations_reach_the_upstreams_translation_endpoint(
    live: LiveServer, fresh: FakeMediaUpstream
) -> None:
    with live.client() as client:
        result = client.audio.translations.create(model="remote-whisper", file=("a.wav", tone(0.5, "wav")))
    assert result.text == "the fake upstream heard you"
    assert fresh.received.transcriptions[-1]["path"] == "/v1/audio/translations"


def test_images_are_stored_here_and_linked_with_our_signed_urls(
    live: LiveServer, fresh: FakeMediaUpstream
) -> None:
    with live.client() as client:
        linked = client.images.generate(model="remote-images", prompt="a fox", size="256x256", n=2)
        inline = client.images.generate(model="remote-images", prompt="a fox", response_format="b64_json")
    assert fresh.received.images[-2]["n"] == 2
    for image in linked.data:
        assert image.url is not None
        assert image.url.startswith(live.base_url)  # ours, never the upstream's link
        assert httpx2.get(image.url, timeout=10).content.startswith(PNG_MAGIC)  # no key needed
    assert inline.data[0].b64_json is not None
    assert base64.b64decode(inline.data[0].b64_json).startswith(PNG_MAGIC)


def test_a_caller_leaving_an_image_call_closes_the_upstream_request(
    live: LiveServer, fresh: FakeMediaUpstream
) -> None:
    fresh.media.image_delay_ms = 10_000
    cancelled = fresh.received.images_cancelled
    with pytest.raises(httpx2.ReadTimeout):
        httpx2.post(
            f"{live.base_url}/v1/images/generations",
            json={"model": "remote-images", "prompt": "slow"},
            headers={"Authorization": f"Bearer {live.api_key}"},
            timeout=httpx2.Timeout(10, read=1.0),
        )
    deadline = time.monotonic() + 10
    while fresh.received.images_cancelled == cancelled:
        assert time.monotonic() < deadline, "the upstream never saw the caller leave"
        time.sleep(0.05)
    log = max(live.usage_logs(), key=lambda entry: entry["created_at"])
    assert (log["model"], log["status"], log["cost_micro_cents"]) == ("remote-images", "cancelled", 0)


# -- vision ------------------------------------------------------------------------------------

PICTURE = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg=="


def test_image_parts_reach_a_vision_upstream(live: LiveServer, fresh: FakeMediaUpstream) -> None:
    content: Any = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": PICTURE, "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/fox.jpg"}},
    ]
    with live.client() as client:
        completion = client.chat.completions.create(
            model="qwen3.5-27b", messages=[{"role": "user", "content": content}], max_tokens=8
        )
    assert completion.choices[0].message.content
    assert fresh.stats.last_body is not None
    assert fresh.stats.last_body["messages"] == [{"role": "user", "content": content}]


def test_image_parts_to_a_model_without_vision_are_refused(
    live: LiveServer, fresh: FakeMediaUpstream
) -> None:
    before = fresh.stats.requests
    content: Any = [{"type": "text", "text": "Look"}, {"type": "image_url", "image_url": {"url": PICTURE}}]
    with live.client() as client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="qwen3-32b", messages=[{"role": "user", "content": content}])
    assert caught.value.body["param"] == "messages"  # type: ignore[index]
    assert caught.value.body["message"] == (  # type: ignore[index]
        "Model 'qwen3-32b' does not take images (image_url content parts); send text or use a model "
        "with vision: qwen3.5-27b."
    )
    assert fresh.stats.requests == before


# -- upstream failures in our envelope ---------------------------------------------------------


CALLS: dict[str, Any] = {
    "embeddings": lambda c: c.embeddings.create(model="remote-embed", input="x"),
    "speech": lambda c: c.audio.speech.create(model="cosyvoice", voice="nova", input="hi"),
    "transcription": lambda c: c.audio.transcriptions.create(
        model="remote-whisper", file=("a.wav", tone(0.2, "wav"))
    ),
    "images": lambda c: c.images.generate(model="remote-images", prompt="x"),
}
ERRORS = {
    400: (openai.BadRequestError, "invalid_request"),
    401: (openai.InternalServerError, "service_unavailable"),
    429: (openai.RateLimitError, "rate_limited"),
    500: (openai.InternalServerError, "service_unavailable"),
}
# CosyVoice (the seed's entry) checks its upstream's health every 10 s: a 500 would leave it
# unavailable that long, so its 5xx case is the other media's.
CASES = [
    (status, call)
    for status in ERRORS
    for call in ("embeddings", "speech", "transcription", "images")
    if (status, call) != (500, "speech")
]


@pytest.mark.parametrize(("status", "call"), CASES)
def test_upstream_refusals_map_to_our_envelope(
    live: LiveServer, fresh: FakeMediaUpstream, status: int, call: str
) -> None:
    error_class, code = ERRORS[status]
    fresh.config.error_status = status
    fresh.config.error_message = f"upstream says no (key {COSYVOICE_KEY})"
    fresh.config.retry_after = "3"
    with live.client() as client, pytest.raises(error_class) as caught:
        CALLS[call](client)
    error = caught.value
    assert error.status_code == {400: 400, 429: 429}.get(status, 503)
    assert error.body["code"] == code
    if status == 400:  # the caller's mistake: the upstream's reason, named as the upstream's
        assert "refused the request (HTTP 400): upstream says no" in error.message
    elif status == 401:  # our misconfiguration: nothing of the upstream's answer leaks
        assert error.message.endswith("is misconfigured on this server (upstream HTTP 401).")
    elif status == 429:
        assert error.response.headers["retry-after"] == "3"


def test_an_unreachable_upstream_is_503_before_anything_is_reserved(live: LiveServer) -> None:
    with live.client() as client, pytest.raises(openai.InternalServerError) as caught:
        client.embeddings.create(model="remote-down", input="x")
    assert caught.value.status_code == 503
    assert caught.value.body["code"] == "service_unavailable"  # type: ignore[index]
    assert "no healthy upstream" in caught.value.message
    assert "127.0.0.1" not in caught.value.message


# -- receipts and traces -----------------------------------------------------------------------


async def test_every_remote_modality_is_signed_and_traced(live: LiveServer) -> None:
    auth = {"Authorization": f"Bearer {live.api_key}"}
    audio = tone(0.5, "wav")
    async with httpx2.AsyncClient(base_url=live.base_url, timeout=60) as http:
        embedded = await http.post(
            "/v1/embeddings",
            json={"model": "remote-embed", "input": ["a", "b"], "encoding_format": "base64"},
            headers=auth,
        )
        vectors = b"".join(base64.b64decode(d["embedding"]) for d in embedded.json()["data"])
        await assert_served_receipt(
            http, embedded, live.api_key, input_bytes=orjson.dumps(["a", "b"]), output_bytes=vectors
        )

        heard = await http.post(
            "/v1/audio/transcriptions",
            data={"model": "remote-whisper"},
            files={"file": ("a.wav", audio)},
            headers=auth,
        )
        await assert_served_receipt(
            http, heard, live.api_key, input_bytes=audio, output_bytes=heard.json()["text"].encode()
        )

        drawn = await http.post(
            "/v1/images/generations",
            json={"model": "remote-images", "prompt": "a fox", "response_format": "b64_json"},
            headers=auth,
        )
        png = base64.b64decode(drawn.json()["data"][0]["b64_json"])
        await assert_served_receipt(http, drawn, live.api_key, input_bytes=b"a fox", output_bytes=png)

        spoken = await http.post(
            "/v1/audio/speech", json={"model": "cosyvoice", "input": "Signed audio."}, headers=auth
        )
        # A stream's headers leave before its audio exists: they name the record and carry the
        # opening statement's signature (as text streams do); the sealed record hashes the audio.
        record_id = spoken.headers["X-VaaS-Record-Id"]
        pack = (await http.get(f"/v1/vaas/{record_id}/evidence")).json()
        assert pack["payload"]["output_hash"] == sha256_ref(spoken.content)
        assert pack["payload"]["input_hash"] == sha256_ref(b"Signed audio.")
        assert (await http.get(f"/v1/vaas/{record_id}/verify")).json()["valid"] is True
        trace_id = spoken.headers["traceparent"].split("-")[1]
        trace = (await http.get(f"/v1/traces/{trace_id}", headers=auth)).json()
        assert trace["record_id"] == record_id
