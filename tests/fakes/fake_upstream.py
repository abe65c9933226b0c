"""A fake OpenAI-compatible upstream (what vLLM, SGLang, TGI or Ollama serve), for tests and benchmarks.

A real Starlette app under uvicorn on 127.0.0.1, speaking OpenAI's wire format:
POST /v1/chat/completions and /v1/completions (JSON, or SSE ending with `data: [DONE]` and, with
`stream_options.include_usage`, a last chunk with `choices: []` and the usage), GET /v1/models.
GET /_stats returns the counters as JSON (for the script form). fake_media_upstream.py adds the
other modalities (embeddings, speech, transcriptions, translations, images) to the same app.

In a test:
    upstream = start_fake_upstream(tokens=5, delay_ms=5)   # background thread, ephemeral port
    ... RemoteConfig(base_urls=(upstream.url,), ...) ...   # upstream.url ends in /v1
    upstream.config.error_status = 500                     # failure modes switch at any time
    upstream.stats.requests, upstream.stats.streams_cancelled
    upstream.stop()

As a script (a separate process, so a benchmark's client does not share its GIL):
    python tests/fakes/fake_upstream.py --port 9100 --tokens 20 --delay-ms 5

Token i of a response is "tok{i} ". "Refusing connections" is a port nobody listens on
(`unused_port()`), or a stopped fake; start a new one on the same port to bring it back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

__all__ = [
    "FakeUpstream",
    "FakeUpstreamConfig",
    "FakeUpstreamStats",
    "create_app",
    "error_response",
    "start_fake_upstream",
]


@dataclass
class FakeUpstreamConfig:
    tokens: int = 20  # tokens per response (fewer when the request's max_tokens is lower)
    delay_ms: float = 0.0  # between tokens
    first_token_delay_ms: float = 0.0  # before the first token (a prefill)
    prompt_tokens: int | None = None  # reported prompt usage; None = whitespace words of the prompt
    send_usage: bool = True  # False: ignore include_usage (an upstream that never reports usage)
    error_status: int | None = None  # answer every completion request with this status
    error_message: str = "fake upstream error"
    retry_after: str | None = None  # Retry-After header sent with error_status
    drop_after_tokens: int | None = None  # abort the connection after this many tokens
    models_status: int = 200  # status of GET /v1/models (what health checks see)


@dataclass
class FakeUpstreamStats:
    requests: int = 0  # completion requests (chat or legacy), whatever their outcome
    models_requests: int = 0
    streams_started: int = 0
    streams_completed: int = 0
    streams_cancelled: int = 0  # the client went away before the end
    streams_dropped: int = 0  # drop_after_tokens fired
    active_streams: int = 0
    max_active_streams: int = 0
    last_body: dict[str, Any] | None = None
    last_headers: dict[str, str] = field(default_factory=dict)
    # The client port of each completion request, in order: one port per connection, so a repeated
    # port is a reused keep-alive connection.
    client_ports: list[int] = field(default_factory=list)


_NO_USAGE = object()


@dataclass(frozen=True)
class _Events:
    head: list[bytes]  # the role chunk (chat only)
    tokens: list[bytes]  # one event per token, paced by delay_ms
    tail: list[bytes]  # finish chunk, usage chunk, [DONE]


class _Dropped(Exception):
    """Raised inside the app so uvicorn aborts the connection mid-body, as a crashed engine would."""


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status, headers, media_type="application/json")


class _EventStream(Response):
    """SSE body sent event by event. It watches `receive` for the disconnect itself: uvicorn's
    `send` silently drops writes after the client left, so only the watcher can tell."""

    def __init__(
        self,
        events: _Events,
        config: FakeUpstreamConfig,
        stats: FakeUpstreamStats,
        content_type: bytes = b"text/event-stream; charset=utf-8",
    ) -> None:
        self.events = events
        self.config = config
        self.stats = stats
        self.content_type = content_type

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stats = self.stats
        stats.streams_started += 1
        stats.active_streams += 1
        stats.max_active_streams = max(stats.max_active_streams, stats.active_streams)
        writer = asyncio.ensure_future(self._write(send))
        watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            await asyncio.wait((writer, watcher), return_when=asyncio.FIRST_COMPLETED)
            if writer.done():
                writer.result()  # re-raises _Dropped
                stats.streams_completed += 1
            else:
                stats.streams_cancelled += 1
        finally:
            stats.active_streams -= 1
            for task in (writer, watcher):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, _Dropped):
                    await task

    async def _write(self, send: Send) -> None:
        config, events = self.config, self.events
        headers = [(b"content-type", self.content_type), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if config.first_token_delay_ms:
            await asyncio.sleep(config.first_token_delay_ms / 1000)
        for event in events.head:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        delay = config.delay_ms / 1000
        for i, event in enumerate(events.tokens):
            if i == config.drop_after_tokens:
                self.stats.streams_dropped += 1
                raise _Dropped
            if delay and i:
                await asyncio.sleep(delay)
            await send({"type": "http.response.body", "body": event, "more_body": True})
        for event in events.tail:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):  # content parts: only the text parts are words
        return " ".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
    return str(content)


class _Completion:
    """One response's content, shaped for chat or legacy completions."""

    def __init__(self, body: dict[str, Any], config: FakeUpstreamConfig, chat: bool) -> None:
        self.chat = chat
        self.model = str(body.get("model", "fake-model"))
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        count = config.tokens if max_tokens is None else min(config.tokens, int(max_tokens))
        self.tokens = [f"tok{i} " for i in range(count)]
        self.finish_reason = "length" if count < config.tokens else "stop"
        if config.prompt_tokens is not None:
            prompt_tokens = config.prompt_tokens
        elif chat:
            prompt_tokens = sum(len(_message_text(m).split()) for m in body.get("messages", []))
        else:
            prompt_tokens = len(str(body.get("prompt", "")).split())
        self.usage = {"prompt_tokens": prompt_tokens, "completion_tokens": count}
        self.usage["total_tokens"] = prompt_tokens + count

    def _event(self, choices: list[dict[str, Any]], usage: Any) -> bytes:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if usage is not _NO_USAGE:  # with include_usage every chunk has "usage" (null until the last)
            chunk["usage"] = usage
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def _choice(self, content: str | None, finish_reason: str | None, role: bool = False) -> dict[str, Any]:
        if not self.chat:
            return {"index": 0, "text": content or "", "logprobs": None, "finish_reason": finish_reason}
        delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
        if content is not None:
            delta["content"] = content
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    def events(self, include_usage: bool) -> _Events:
        """All events up front, so the per-token work while streaming is one send."""
        usage = None if include_usage else _NO_USAGE
        head = [self._event([self._choice(None, None, role=True)], usage)] if self.chat else []
        tokens = [self._event([self._choice(t, None)], usage) for t in self.tokens]
        tail = [self._event([self._choice(None, self.finish_reason)], usage)]
        if include_usage:
            tail.append(self._event([], self.usage))
        tail.append(b"data: [DONE]\n\n")
        return _Events(head, tokens, tail)

    def whole(self) -> dict[str, Any]:
        text = "".join(self.tokens)
        if self.chat:
            message = {"role": "assistant", "content": text}
            choice: dict[str, Any] = {"index": 0, "message": message, "logprobs": None}
        else:
            choice = {"index": 0, "text": text, "logprobs": None}
        choice["finish_reason"] = self.finish_reason
        kind = "chat.completion" if self.chat else "text_completion"
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [choice],
            "usage": self.usage,
        }


def error_response(config: FakeUpstreamConfig) -> Response | None:
    """The configured failure (`error_status`), in OpenAI's error envelope; None when there is none."""
    if config.error_status is None:
        return None
    headers = {"Retry-After": config.retry_after} if config.retry_after else None
    error = {"message": config.error_message, "type": "fake_error", "param": None, "code": None}
    return _json({"error": error}, config.error_status, headers)


def create_app(
    config: FakeUpstreamConfig, stats: FakeUpstreamStats, extra_routes: Sequence[BaseRoute] = ()
) -> Starlette:
    """`extra_routes`: more endpoints on the same upstream (fake_media_upstream.py's)."""

    async def complete(request: Request, chat: bool) -> Response:
        stats.requests += 1
        body = orjson.loads(await request.body())
        stats.last_body = body
        stats.last_headers = dict(request.headers)
        stats.client_ports.append(request.client.port if request.client else 0)
        refusal = error_response(config)
        if refusal is not None:
            return refusal
        completion = _Completion(body, config, chat)
        if not body.get("stream"):
            # A real engine takes as long to answer whole as to stream: pace it the same way.
            tokens = min(config.tokens, int(body.get("max_tokens") or config.tokens))
            pause = config.first_token_delay_ms + config.delay_ms * max(0, tokens - 1)
            if pause:
                await asyncio.sleep(pause / 1000)
            return _json(completion.whole())
        include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and config.send_usage
        return _EventStream(completion.events(include_usage), config, stats)

    async def chat_completions(request: Request) -> Response:
        return await complete(request, chat=True)

    async def completions(request: Request) -> Response:
        return await complete(request, chat=False)

    async def models(request: Request) -> Response:
        stats.models_requests += 1
        if config.models_status != 200:
            return _json({"error": {"message": "unhealthy", "type": "fake_error"}}, config.models_status)
        data = [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}]
        return _json({"object": "list", "data": data})

    async def stats_route(request: Request) -> Response:
        return _json(asdict(stats))

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/_stats", stats_route, methods=["GET"]),
        *extra_routes,
    ]
    return Starlette(routes=routes)


def _uvicorn_config(app: Starlette, **extra: Any) -> uvicorn.Config:
    # No websockets (its import warns), no lifespan, no access log: nothing per request but the app;
    # httptools when installed (it is, with the product), so the fake is never the bottleneck.
    return uvicorn.Config(
        app, http="auto", ws="none", lifespan="off", access_log=False, timeout_graceful_shutdown=1, **extra
    )


def unused_port() -> int:
    """A port that nothing listens on right now (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeUpstream:
    """A running fake: `.url` is the OpenAI base URL (…/v1); `.config` and `.stats` are live."""

    def __init__(
        self,
        config: FakeUpstreamConfig,
        port: int = 0,
        routes: Sequence[BaseRoute] = (),
        app: Starlette | None = None,
    ) -> None:
        """`routes`: more routes on the fake's app; `app`: serve another app on this plumbing
        (tests/fakes/tool_upstream.py does)."""
        self.config = config
        self.stats = FakeUpstreamStats()
        # proto=IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY on accepted sockets only
        # when it sees the TCP proto, and without it Nagle adds ~40 ms to every reused connection.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", port))
        self.port = int(self._socket.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}/v1"
        app = app or create_app(config, self.stats, routes)
        self._server = uvicorn.Server(_uvicorn_config(app, log_config=None))
        self._thread = threading.Thread(target=self._serve, name=f"fake-upstream-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("fake upstream did not start")
            time.sleep(0.005)

    def _serve(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._socket]))

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


def start_fake_upstream(
    config: FakeUpstreamConfig | None = None, *, port: int = 0, **options: Any
) -> FakeUpstream:
    """Start a fake in a background thread; `options` are FakeUpstreamConfig fields."""
    return FakeUpstream(config or FakeUpstreamConfig(**options), port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--first-token-delay-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    config = FakeUpstreamConfig(
        tokens=args.tokens, delay_ms=args.delay_ms, first_token_delay_ms=args.first_token_delay_ms
    )
    app = create_app(config, FakeUpstreamStats())
    print(f"fake upstream on http://{args.host}:{args.port}/v1", flush=True)
    uvicorn.Server(_uvicorn_config(app, host=args.host, port=args.port, log_level="warning")).run()


if __name__ == "__main__":
    main()
