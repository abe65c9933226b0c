"""RemoteRunner against real fake upstreams (uvicorn on loopback): streaming, usage, failover,
error mapping, health and cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from batchin.errors import InvalidRequest, RateLimited, ServiceUnavailable
from batchin.models.base import (
    ChatMessage,
    ChatParams,
    CompletionParams,
    JsonOutput,
    PreparedPrompt,
    SamplingParams,
    TextDelta,
    Usage,
)
from batchin.models.remote import RemoteConfig, RemoteRunner
from batchin.models.upstream_stream import StreamDecoder
from tests.fakes.fake_upstream import FakeUpstream, start_fake_upstream, unused_port

MakeRunner = Callable[..., RemoteRunner]


@pytest.fixture
def fakes() -> Iterator[Callable[..., FakeUpstream]]:
    started: list[FakeUpstream] = []

    def start(**options: Any) -> FakeUpstream:
        started.append(start_fake_upstream(**options))
        return started[-1]

    yield start
    for fake in started:
        fake.stop()


@pytest.fixture
async def make_runner() -> AsyncIterator[MakeRunner]:
    runners: list[RemoteRunner] = []

    def make(*urls: str, **options: Any) -> RemoteRunner:
        options.setdefault("context_length", 4096)
        options.setdefault("health_check_interval", 0)
        config = RemoteConfig(model_id="remote-test", base_urls=urls, upstream_model="up-model", **options)
        runners.append(RemoteRunner(config))
        return runners[-1]

    yield make
    for runner in runners:
        await runner.close()


def chat(text: str = "Say hello", max_tokens: int = 64) -> ChatParams:
    return ChatParams((ChatMessage("user", text),), SamplingParams(max_tokens=max_tokens))


async def collect(runner: RemoteRunner, prepared: PreparedPrompt) -> list[TextDelta]:
    return [delta async for delta in runner.generate(prepared)]


async def consume(stream: AsyncIterator[TextDelta], into: list[str]) -> None:
    async for delta in stream:
        into.append(delta.text)


def dead_url() -> str:
    return f"http://127.0.0.1:{unused_port()}/v1"


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_chat_streams_text_and_passes_upstream_usage_through(
    fakes: Any, make_runner: MakeRunner
) -> None:
    fake = fakes(tokens=4, prompt_tokens=123)
    runner = make_runner(fake.url)

    deltas = await collect(runner, await runner.prepare_chat(chat()))

    assert [d.text for d in deltas] == ["tok0 ", "tok1 ", "tok2 ", "tok3 ", ""]
    assert deltas[-1].finish_reason == "stop"
    assert deltas[-1].usage == Usage(prompt_tokens=123, completion_tokens=4)
    assert all(d.usage is None and d.finish_reason is None for d in deltas[:-1])


async def test_whole_answer_is_fetched_in_one_non_streaming_request(
    fakes: Any, make_runner: MakeRunner
) -> None:
    fake = fakes(tokens=3, prompt_tokens=42)
    runner = make_runner(fake.url)
    params = ChatParams((ChatMessage("user", "hi"),), SamplingParams(max_tokens=8), stream=False)

    deltas = await collect(runner, await runner.prepare_chat(params))

    assert fake.stats.last_body is not None
    assert fake.stats.last_body["stream"] is False
    assert "stream_options" not in fake.stats.last_body
    assert fake.stats.streams_started == 0
    assert [(d.text, d.finish_reason, d.usage) for d in deltas] == [
        ("tok0 tok1 tok2 ", "stop", Usage(prompt_tokens=42, completion_tokens=3))
    ]


async def test_chat_request_body_follows_openai_wire_format(fakes: Any, make_runner: MakeRunner) -> None:
    fake = fakes(tokens=1)
    runner = make_runner(fake.url, api_key="sk-upstream")
    params = ChatParams(
        (ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")),
        SamplingParams(max_tokens=7, temperature=0.5, top_p=0.9, stop=("\n",), seed=42),
    )

    await collect(runner, await runner.prepare_chat(params))

    assert fake.stats.last_body == {
        "model": "up-model",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 7,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["\n"],
        "seed": 42,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert fake.stats.last_headers["authorization"] == "Bearer sk-upstream"


async def test_response_format_and_penalties_are_passed_on(fakes: Any, make_runner: MakeRunner) -> None:
    fake = fakes(tokens=1)
    runner = make_runner(fake.url)
    schema = '{"type":"object","properties":{"a":{"type":"integer","minimum":0}}}'
    sampling = SamplingParams(
        max_tokens=7,
        json_output=JsonOutput(schema=schema, name="thing", strict=True),
        presence_penalty=0.5,
        frequency_penalty=-0.25,
        logit_bias=((42, -100.0),),
    )
    await collect(runner, await runner.prepare_chat(ChatParams((ChatMessage("user", "Hi"),), sampling)))
    body = fake.stats.last_body
    assert body is not None
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": json.loads(schema), "strict": True},
    }
    assert (body["presence_penalty"], body["frequency_penalty"]) == (0.5, -0.25)
    assert body["logit_bias"] == {"42": -100.0}
    plain = SamplingParams(max_tokens=7, json_output=JsonOutput())
    await collect(runner, await runner.prepare_chat(ChatParams((ChatMessage("user", "Hi"),), plain)))
    assert fake.stats.last_body is not None
    assert fake.stats.last_body["response_format"] == {"type": "json_object"}
    assert "presence_penalty" not in fake.stats.last_body


async def test_completion_passes_suffix_and_reports_length(fakes: Any, make_runner: MakeRunner) -> None:
    fake = fakes(tokens=10, prompt_tokens=9)
    runner = make_runner(fake.url)
    params = CompletionParams("def add(a, b):", SamplingParams(max_tokens=3), suffix="\n    return c")

    deltas = await collect(runner, await runner.prepare_completion(params))

    assert "".join(d.text for d in deltas) == "tok0 tok1 tok2 "
    assert (deltas[-1].finish_reason, deltas[-1].usage) == ("length", Usage(9, 3))
    assert fake.stats.last_body is not None
    assert fake.stats.last_body["prompt"] == "def add(a, b):"
    assert fake.stats.last_body["suffix"] == "\n    return c"


async def test_missing_usage_falls_back_to_estimate_and_delta_count(
    fakes: Any, make_runner: MakeRunner
) -> None:
    fake = fakes(tokens=6, send_usage=False)
    runner = make_runner(fake.url)
    prepared = await runner.prepare_chat(chat())

    deltas = await collect(runner, prepared)

    assert not prepared.exact
    assert deltas[-1].usage == Usage(prepared.prompt_tokens, 6)


async def test_fails_over_when_the_first_upstream_refuses_connections(
    fakes: Any, make_runner: MakeRunner
) -> None:
    fake = fakes(tokens=2)
    runner = make_runner(dead_url(), fake.url)

    first = await collect(runner, await runner.prepare_chat(chat()))  # round robin starts at the dead one
    second = await collect(runner, await runner.prepare_chat(chat()))

    assert first[-1].finish_reason == second[-1].finish_reason == "stop"
    assert fake.stats.requests == 2
    assert runner.health().status == "always_on"
    assert runner.health().extra == {"upstreams": 2, "upstreams_healthy": 1}


async def test_round_robin_spreads_requests(fakes: Any, make_runner: MakeRunner) -> None:
    a, b = fakes(tokens=1), fakes(tokens=1)
    runner = make_runner(a.url, b.url)

    for _ in range(4):
        await collect(runner, await runner.prepare_chat(chat()))

    assert (a.stats.requests, b.stats.requests) == (2, 2)


async def test_no_retry_after_the_upstream_answered_500(fakes: Any, make_runner: MakeRunner) -> None:
    a, b = fakes(error_status=500), fakes(error_status=500)
    runner = make_runner(a.url, b.url)
    prepared = await runner.prepare_chat(chat())

    with pytest.raises(ServiceUnavailable, match="HTTP 500"):
        await collect(runner, prepared)

    assert a.stats.requests + b.stats.requests == 1


async def test_429_maps_to_rate_limited_with_upstream_retry_after(
    fakes: Any, make_runner: MakeRunner
) -> None:
    fake = fakes(error_status=429, retry_after="7", error_message="Too many requests upstream")
    runner = make_runner(fake.url)
    prepared = await runner.prepare_chat(chat())

    with pytest.raises(RateLimited) as caught:
        await collect(runner, prepared)

    assert caught.value.retry_after == 7.0
    assert caught.value.headers["Retry-After"] == "7"
    assert caught.value.message == "Too many requests upstream"
    assert runner.health().status == "always_on"


async def test_upstream_400_is_the_callers_error_with_its_message(
    fakes: Any, make_runner: MakeRunner
) -> None:
    fake = fakes(error_status=400, error_message="temperature must be <= 2")
    runner = make_runner(fake.url)
    prepared = await runner.prepare_chat(chat())

    with pytest.raises(InvalidRequest, match="temperature must be <= 2"):
        await collect(runner, prepared)


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_upstream_auth_or_routing_refusal_is_our_misconfiguration(
    fakes: Any, make_runner: MakeRunner, status: int
) -> None:
    fake = fakes(error_status=status, error_message="invalid api key sk-secret")
    runner = make_runner(fake.url)
    prepared = await runner.prepare_chat(chat())

    with pytest.raises(ServiceUnavailable) as caught:
        await collect(runner, prepared)

    assert "misconfigured" in caught.value.message
    assert "sk-secret" not in caught.value.message


async def test_all_upstreams_down_is_service_unavailable_and_unhealthy(make_runner: MakeRunner) -> None:
    runner = make_runner(dead_url(), dead_url(), health_check_interval=60)
    await runner.start()

    assert runner.health().status == "unavailable"
    assert "no healthy upstream" in str(runner.health().reason)
    with pytest.raises(ServiceUnavailable, match="No upstream of model remote-test is reachable"):
        await collect(runner, await runner.prepare_chat(chat()))


async def test_health_recovers_when_the_upstream_comes_back(fakes: Any, make_runner: MakeRunner) -> None:
    port = unused_port()
    runner = make_runner(f"http://127.0.0.1:{port}/v1", health_check_interval=0.05)
    await runner.start()
    assert runner.health().status == "unavailable"

    fake = fakes(tokens=1, port=port)
    await eventually(lambda: runner.health().status == "always_on")

    assert fake.stats.models_requests >= 1
    deltas = await collect(runner, await runner.prepare_chat(chat()))
    assert deltas[-1].finish_reason == "stop"


async def test_failing_health_check_marks_upstream_unhealthy(fakes: Any, make_runner: MakeRunner) -> None:
    fake = fakes(models_status=503)
    runner = make_runner(fake.url, health_check_interval=60)

    await runner.start()

    assert runner.health().status == "unavailable"
    assert "HTTP 503" in str(runner.health().reason)


async def test_closing_the_stream_early_cancels_the_upstream(fakes: Any, make_runner: MakeRunner) -> None:
    fake = fakes(tokens=1000, delay_ms=5)
    runner = make_runner(fake.url)
    prepared = await runner.prepare_chat(chat(max_tokens=1000))

    async with contextlib.aclosing(runner.generate(prepared)) as stream:
        received = [await anext(stream) for _ in range(3)]

    assert [d.text for d in received] == ["tok0 ", "tok1 ", "tok2 "]
    await eventually(lambda: fake.stats.streams_cancelled == 1)
    assert fake.stats.streams_completed == 0


async def test_stream_dropped_mid_way_is_service_unavailable(fakes: Any, make_runner: MakeRunner) -> None:
    fake = fakes(tokens=10, drop_after_tokens=3)
    runner = make_runner(fake.url)
    received: list[str] = []
    prepared = await runner.prepare_chat(chat())

    with pytest.raises(ServiceUnavailable, match="broke off the stream"):
        await consume(runner.generate(prepared), received)

    assert received == ["tok0 ", "tok1 ", "tok2 "]
    assert fake.stats.streams_dropped == 1
    assert runner.health().status == "unavailable"


async def test_max_tokens_beyond_context_is_refused(make_runner: MakeRunner) -> None:
    runner = make_runner(dead_url(), context_length=100)

    with pytest.raises(InvalidRequest) as caught:
        await runner.prepare_chat(chat("short", max_tokens=200))

    assert caught.value.param == "max_tokens"
    assert "maximum context length is 100 tokens" in caught.value.message


async def test_prompt_beyond_context_is_refused(make_runner: MakeRunner) -> None:
    runner = make_runner(dead_url(), context_length=100)

    with pytest.raises(InvalidRequest) as caught:
        await runner.prepare_completion(CompletionParams("word " * 200, SamplingParams(max_tokens=1)))

    assert caught.value.param == "prompt"


def test_config_refuses_a_route_without_upstreams() -> None:
    with pytest.raises(ValueError, match="at least one upstream"):
        RemoteConfig(model_id="m", base_urls=(), upstream_model="m", context_length=10)


def test_config_repr_hides_the_api_key() -> None:
    config = RemoteConfig(
        model_id="m", base_urls=("http://x/v1",), upstream_model="m", context_length=10, api_key="sk-1"
    )
    assert "sk-1" not in repr(config)


async def test_from_entry_resolves_the_api_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-from-env")
    entry = SimpleNamespace(
        id="llama-remote",
        upstreams=["http://10.0.0.7:8000/v1", "http://10.0.0.8:8000/v1"],
        upstream_model="meta-llama/Llama-3.1-8B-Instruct",
        api_key_env="TEST_UPSTREAM_KEY",
        context_length=8192,
        max_concurrency=32,
    )

    runner = RemoteRunner.from_entry(entry)
    try:
        assert runner.config == RemoteConfig(
            model_id="llama-remote",
            base_urls=("http://10.0.0.7:8000/v1", "http://10.0.0.8:8000/v1"),
            upstream_model="meta-llama/Llama-3.1-8B-Instruct",
            context_length=8192,
            api_key="sk-from-env",
            max_concurrency=32,
        )
        assert (runner.context_length, runner.max_concurrency, runner.supports_fim) == (8192, 32, True)
    finally:
        await runner.close()


async def test_from_entry_reads_the_catalogs_nested_upstream_table() -> None:
    upstream = SimpleNamespace(
        urls=("http://10.0.0.7:8000/v1",), model="qwen", api_key_env=None, timeout_seconds=30.0
    )
    entry = SimpleNamespace(id="big-remote", upstream=upstream, context_length=32768, max_concurrency=8)

    runner = RemoteRunner.from_entry(entry)
    try:
        assert (runner.config.base_urls, runner.config.upstream_model) == (
            ("http://10.0.0.7:8000/v1",),
            "qwen",
        )
        assert (runner.config.read_timeout, runner.config.api_key) == (30.0, None)
    finally:
        await runner.close()


async def test_connections_are_reused_after_complete_answers(fakes: Any, make_runner: MakeRunner) -> None:
    fake = fakes(tokens=3)
    runner = make_runner(fake.url)
    whole = ChatParams((ChatMessage("user", "hi"),), SamplingParams(max_tokens=8), stream=False)

    for params in (chat(), whole, chat()):
        deltas = await collect(runner, await runner.prepare_chat(params))
        assert deltas[-1].finish_reason == "stop"

    ports = fake.stats.client_ports
    assert len(ports) == 3
    assert len(set(ports)) == 1  # one connection, reused twice


async def test_closing_early_drops_the_connection_instead_of_pooling_it(
    fakes: Any, make_runner: MakeRunner
) -> None:
    fake = fakes(tokens=100, delay_ms=5)
    runner = make_runner(fake.url)

    async with contextlib.aclosing(
        runner.generate(await runner.prepare_chat(chat(max_tokens=100)))
    ) as stream:
        await anext(stream)
    fake.config.tokens = 1
    deltas = await collect(runner, await runner.prepare_chat(chat()))

    assert deltas[-1].finish_reason == "stop"
    ports = fake.stats.client_ports
    assert len(ports) == 2
    assert ports[0] != ports[1]  # a new connection for the second call
    await eventually(lambda: fake.stats.streams_cancelled == 1)


async def test_connect_failures_do_not_reveal_upstream_addresses(make_runner: MakeRunner) -> None:
    url = dead_url()
    port = url.split(":")[2].split("/")[0]
    runner = make_runner(url, health_check_interval=60)
    await runner.start()

    with pytest.raises(ServiceUnavailable) as caught:
        await collect(runner, await runner.prepare_chat(chat()))

    reason = str(runner.health().reason)
    assert "Connection refused" in reason
    assert "Connection refused" in caught.value.message
    for text in (reason, caught.value.message):
        assert port not in text
        assert "127.0.0.1" not in text


def test_stream_decoder_reassembles_events_split_anywhere() -> None:
    body = (
        b": keep-alive\r\n\r\n"
        b'data: {"choices":[{"index":0,"delta":{"content":"h\xc3\xa9"}}]}\r\n\r\n'
        b'data: {"choices":[{"index":0,"delta":{"content":"llo"},\r\ndata: "finish_reason":"length"}]}\n\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}\n\n'
        b"data: [DONE]"
    )
    # With CR line ends (read line by line) and without (read event by event), split anywhere.
    for size, text in itertools.product((1, 2, 7, len(body)), (body, body.replace(b"\r", b""))):
        decoder = StreamDecoder(chat=True)
        texts = [t for i in range(0, len(text), size) for t in decoder.feed(text[i : i + size])]
        texts += decoder.end()

        assert texts == ["h\u00e9", "llo"]
        assert (decoder.done, decoder.finish_reason, decoder.usage) == (True, "length", Usage(5, 2))


def test_stream_decoder_reads_one_event_per_chunk_as_engines_send_them() -> None:
    events = [
        b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n',
        b"event: error\n",  # the next chunk's data belongs to this event
        b'data: {"message": "engine overloaded"}\n\n',
    ]
    decoder = StreamDecoder(chat=True)

    assert decoder.feed(events[0]) == ["a"]
    assert decoder.feed(events[1]) == []
    with pytest.raises(ServiceUnavailable, match="mid-stream: engine overloaded"):
        decoder.feed(events[2])


def test_stream_decoder_raises_on_an_error_event() -> None:
    decoder = StreamDecoder(chat=False)

    with pytest.raises(ServiceUnavailable, match="mid-stream: engine overloaded"):
        decoder.feed(b'event: error\ndata: {"message": "engine overloaded"}\n\n')
