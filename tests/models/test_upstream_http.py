"""The lean upstream client (models/upstream_http.py) through RemoteRunner, against a raw scripted
upstream: the HTTP a real server or provider may send that uvicorn never does (chunked trailers,
gzip, `Connection: close`, bodies that end with the connection, 1xx, stalls), TLS, cancellation
while the answer is pending, and the per-origin connection bound."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import uvloop

from batchin.errors import ServiceUnavailable
from batchin.models.base import ChatMessage, ChatParams, SamplingParams, TextDelta, Usage
from batchin.models.remote import RemoteConfig, RemoteRunner
from tests.fakes.raw_http_upstream import CLOSE, RawUpstream, chunked, gzipped, sse_events

MakeRunner = Callable[..., RemoteRunner]

SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"


@pytest.fixture
def raw() -> Iterator[Callable[..., RawUpstream]]:
    started: list[RawUpstream] = []

    def start(**options: Any) -> RawUpstream:
        started.append(RawUpstream(**options))
        return started[-1]

    yield start
    for upstream in started:
        upstream.stop()


@pytest.fixture
async def make_runner() -> AsyncIterator[MakeRunner]:
    runners: list[RemoteRunner] = []

    def make(url: str, **options: Any) -> RemoteRunner:
        options.setdefault("health_check_interval", 0)
        config = RemoteConfig(
            model_id="raw-test", base_urls=(url,), upstream_model="up", context_length=4096, **options
        )
        runners.append(RemoteRunner(config))
        return runners[-1]

    yield make
    for runner in runners:
        await runner.close()


def params(*, stream: bool = True) -> ChatParams:
    return ChatParams((ChatMessage("user", "hi"),), SamplingParams(max_tokens=8), stream=stream)


async def texts(runner: RemoteRunner, *, stream: bool = True) -> list[TextDelta]:
    prepared = await runner.prepare_chat(params(stream=stream))
    return [delta async for delta in runner.generate(prepared)]


WHOLE = (
    b'{"choices":[{"message":{"content":"whole"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":4,"completion_tokens":1}}'
)


async def test_chunked_gzip_stream_with_trailers_is_decoded_and_the_connection_reused(
    raw: Any, make_runner: MakeRunner
) -> None:
    upstream = raw()
    body = chunked(gzipped(sse_events("a", "b", "c")), 7, trailers=b"X-Checksum: 1\r\n")
    head = SSE_HEAD + b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
    upstream.answer = lambda request: [head, body[:10], (0.01, body[10:])]
    runner = make_runner(upstream.url)

    for _ in range(2):
        deltas = await texts(runner)
        assert [d.text for d in deltas] == ["a", "b", "c", ""]
        assert deltas[-1].usage == Usage(3, 2)

    assert [r.connection for r in upstream.requests] == [0, 0]
    first = upstream.requests[0]
    assert (first.method, first.path) == ("POST", "/v1/chat/completions")
    assert first.headers["accept"] == "text/event-stream"
    assert first.headers["host"] == upstream.url.split("/")[2]


async def test_connection_close_and_http10_answers_are_not_reused(raw: Any, make_runner: MakeRunner) -> None:
    upstream = raw()
    answers = [
        [
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(WHOLE), WHOLE),
            CLOSE,
        ],
        [
            b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + WHOLE,
            CLOSE,
        ],  # ends with the connection
        [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(WHOLE), WHOLE)],
    ]
    upstream.answer = lambda request: answers[len(upstream.requests) - 1]
    runner = make_runner(upstream.url)

    for _ in answers:
        [delta] = await texts(runner, stream=False)
        assert (delta.text, delta.usage) == ("whole", Usage(4, 1))

    assert [r.connection for r in upstream.requests] == [0, 1, 2]


async def test_interim_1xx_answers_are_skipped(raw: Any, make_runner: MakeRunner) -> None:
    upstream = raw()
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(WHOLE), WHOLE)
    upstream.answer = lambda request: [
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
        answer,
    ]
    runner = make_runner(upstream.url)

    [delta] = await texts(runner, stream=False)

    assert delta.text == "whole"


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 4\r\n\r\nabcd",  # not decodable here
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n{}",  # cut short
        b"HTTP/1.1 2000 Whatever\r\n\r\n",  # not HTTP
    ],
)
async def test_unusable_answers_are_service_unavailable(
    raw: Any, make_runner: MakeRunner, answer: bytes
) -> None:
    upstream = raw()
    upstream.answer = lambda request: [answer, CLOSE]
    runner = make_runner(upstream.url)

    with pytest.raises(ServiceUnavailable):
        await texts(runner, stream=False)

    assert runner.health().status == "unavailable"


async def test_a_stalled_stream_times_out_between_bytes(raw: Any, make_runner: MakeRunner) -> None:
    upstream = raw()
    events = sse_events("a")
    upstream.answer = lambda request: [SSE_HEAD + b"\r\n", events[:20], (5.0, events[20:])]
    runner = make_runner(upstream.url, read_timeout=0.2)
    received: list[str] = []
    stream = runner.generate(await runner.prepare_chat(params()))

    with pytest.raises(ServiceUnavailable, match="broke off the stream") as caught:
        received.extend([delta.text async for delta in stream])

    assert isinstance(caught.value.__cause__, TimeoutError)
    assert received == []
    await _eventually(lambda: upstream.state.disconnects_before_answer == 1)


async def test_cancelling_while_the_answer_is_pending_closes_the_connection(
    raw: Any, make_runner: MakeRunner
) -> None:
    upstream = raw()
    upstream.answer = lambda request: [(5.0, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")]
    runner = make_runner(upstream.url)
    prepared = await runner.prepare_chat(params())

    async def first() -> TextDelta:
        async with contextlib.aclosing(runner.generate(prepared)) as stream:
            return await anext(stream)

    task = asyncio.ensure_future(first())
    await _eventually(lambda: len(upstream.requests) == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await _eventually(lambda: upstream.state.disconnects_before_answer == 1)


async def test_connections_per_upstream_are_bounded(raw: Any, make_runner: MakeRunner) -> None:
    upstream = raw()
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(WHOLE), WHOLE)
    upstream.answer = lambda request: [(0.05, answer)]
    runner = make_runner(upstream.url, max_concurrency=1)  # one stream slot plus one for health checks

    results = await asyncio.gather(*(texts(runner, stream=False) for _ in range(4)))

    assert [d.text for [d] in results] == ["whole"] * 4
    assert upstream.state.connections == 2


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (the openssl CLI: no Python dependency for it)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_https_upstreams_are_verified_against_the_trust_store(
    raw: Any, make_runner: MakeRunner, certificate: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = raw(tls=certificate)
    upstream.answer = lambda request: [
        SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n",
        chunked(sse_events("s"), 64),
    ]

    untrusted = make_runner(upstream.url, health_check_interval=60)
    await untrusted.start()  # the system's trust store does not know our certificate
    assert "TLS" in str(untrusted.health().reason)

    monkeypatch.setenv("SSL_CERT_FILE", certificate[0])  # read when a runner's TLS context is made
    trusted = make_runner(upstream.url, health_check_interval=60)
    await trusted.start()
    assert trusted.health().status == "always_on"
    deltas = await texts(trusted)
    assert [d.text for d in deltas] == ["s", ""]


async def _eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_the_client_runs_on_uvloop(raw: Any) -> None:
    """`batchin serve` runs uvloop, whose transports are not asyncio's classes."""
    upstream = raw()
    upstream.answer = lambda request: [
        SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n",
        chunked(sse_events("u"), 9),
    ]

    async def run() -> list[str]:
        config = RemoteConfig(
            model_id="raw-test", base_urls=(upstream.url,), upstream_model="up", context_length=4096
        )
        runner = RemoteRunner(config)
        try:
            await runner.start()  # a health check on the same client
            return [d.text for _ in range(2) for d in await texts(runner)]
        finally:
            await runner.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(run()) == ["u", "", "u", ""]
    assert [r.connection for r in upstream.requests] == [0, 0, 0]


async def test_an_unusable_upstream_url_is_service_unavailable(make_runner: MakeRunner) -> None:
    runner = make_runner("http://127.0.0.1:99999/v1")  # a port out of range

    with pytest.raises(ServiceUnavailable, match="not a valid URL"):
        await texts(runner)


async def test_waiting_past_the_pool_timeout_for_a_connection_is_service_unavailable(
    raw: Any, make_runner: MakeRunner
) -> None:
    upstream = raw()
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(WHOLE), WHOLE)
    upstream.answer = lambda request: [(0.3, answer)]
    runner = make_runner(upstream.url, max_concurrency=1, pool_timeout=0.05)  # two connections

    results = await asyncio.gather(*(texts(runner, stream=False) for _ in range(3)), return_exceptions=True)

    refused = [r for r in results if isinstance(r, ServiceUnavailable)]
    assert len(refused) == 1
    assert "no pooled connection free in time" in refused[0].message
    assert upstream.state.connections == 2


async def test_a_connection_that_speaks_while_idle_is_not_reused(raw: Any, make_runner: MakeRunner) -> None:
    upstream = raw()
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(WHOLE), WHOLE)
    timeout = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"  # what some servers send
    upstream.answer = lambda request: [answer, (0.05, timeout)] if request.connection == 0 else [answer]
    runner = make_runner(upstream.url)

    await texts(runner, stream=False)
    await asyncio.sleep(0.1)  # the 408 arrives on the idle connection
    [delta] = await texts(runner, stream=False)

    assert delta.text == "whole"
    assert [r.connection for r in upstream.requests] == [0, 1]
