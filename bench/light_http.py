"""The lightest HTTP/1.1 load generator and fake upstream we can write, for benches where they share
the cores with the server under test (bench_workers.py): every CPU cycle they spend is one the server
does not get, so neither parses more than it must nor builds an object per request.

- `drive(...)`: a closed loop of keep-alive connections over raw asyncio streams, each sending one
  prebuilt request after another and reading the answer's status line, headers and body by its
  Content-Length (what uvicorn sends for a JSON answer).
- `LightUpstream` / `python bench/light_http.py --port P`: an OpenAI-compatible upstream on an
  asyncio Protocol answering POST /v1/chat/completions with one prebuilt completion (`tokens`
  tokens, optionally after `delay_ms` per token, as tests/fakes/fake_upstream.py paces a whole
  answer) and GET /v1/models; its stats are the request count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

MODELS = json.dumps(
    {"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}]}
).encode()


def _answer(status: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


def completion(tokens: int) -> bytes:
    """The whole chat completion the fake upstream gives every call (its shape as fake_upstream's)."""
    text = "".join(f"tok{i} " for i in range(tokens))
    body = {
        "id": "chatcmpl-light",
        "object": "chat.completion",
        "created": 0,
        "model": "fake-model",
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 2, "completion_tokens": tokens, "total_tokens": 2 + tokens},
    }
    return json.dumps(body).encode()


class _UpstreamProtocol(asyncio.Protocol):
    def __init__(self, upstream: LightUpstream) -> None:
        self._upstream = upstream
        self._buffer = b""
        self._transport: Any = None  # uvloop's transports are not asyncio.Transport subclasses

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end]
            length = 0
            marker = head.lower().find(b"content-length:")
            if marker >= 0:
                stop = head.find(b"\r\n", marker)
                length = int(head[marker + 15 : stop if stop >= 0 else None])
            if len(self._buffer) < end + 4 + length:
                return
            self._buffer = self._buffer[end + 4 + length :]
            self._respond(head)

    def _respond(self, head: bytes) -> None:
        upstream = self._upstream
        if head.startswith(b"POST /v1/chat/completions"):
            upstream.requests += 1
            if upstream.pause:
                asyncio.get_running_loop().call_later(upstream.pause, self._write, upstream.chat)
                return
            self._write(upstream.chat)
        elif head.startswith(b"GET /v1/models"):
            self._write(upstream.models)
        else:
            self._write(_answer("404 Not Found", b'{"error":{"message":"not found"}}'))

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)


@dataclass
class LightUpstream:
    tokens: int = 20
    delay_ms: float = 0.0
    requests: int = 0
    chat: bytes = field(init=False)
    models: bytes = field(init=False)
    pause: float = field(init=False)

    def __post_init__(self) -> None:
        self.chat = _answer("200 OK", completion(self.tokens))
        self.models = _answer("200 OK", MODELS)
        self.pause = self.delay_ms * max(0, self.tokens - 1) / 1000

    async def serve(self, host: str, port: int) -> None:
        server = await asyncio.get_running_loop().create_server(
            lambda: _UpstreamProtocol(self), host, port, backlog=2048
        )
        async with server:
            await server.serve_forever()


def chat_body(model: str, max_tokens: int = 20) -> bytes:
    """The JSON body of every benchmark chat call (also what bench/native_load.py's wrk sends)."""
    return json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}
    ).encode()


def chat_request(host: str, port: int, key: str, model: str, max_tokens: int = 20) -> bytes:
    body = chat_body(model, max_tokens)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}:{port}\r\nauthorization: Bearer {key}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class Driven:
    ok: int
    failed: int
    seconds: float
    statuses: dict[int, int]


async def _connection(host: str, port: int, request: bytes, stop: float, tally: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.monotonic() < stop:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            marker = head.lower().find(b"content-length:")
            if marker < 0:
                raise RuntimeError(f"an answer without Content-Length: {head[:200]!r}")
            end = head.find(b"\r\n", marker)
            await reader.readexactly(int(head[marker + 15 : end]))
            tally[status] = tally.get(status, 0) + 1
            if b"connection: close" in head.lower():
                break
    finally:
        writer.close()


async def _drive(host: str, targets: list[tuple[int, bytes]], connections: int, seconds: float) -> Driven:
    tally: dict[int, int] = {}
    started = time.monotonic()
    stop = started + seconds
    await asyncio.gather(
        *(_connection(host, *targets[index % len(targets)], stop, tally) for index in range(connections))
    )
    elapsed = time.monotonic() - started
    ok = tally.get(200, 0)
    return Driven(ok, sum(tally.values()) - ok, elapsed, tally)


def drive(host: str, targets: list[tuple[int, bytes]], *, connections: int, seconds: float) -> Driven:
    """`connections` keep-alive connections spread over `targets` (port, request), each sending
    its request again as soon as it is answered, for `seconds` (on uvloop, the lighter loop)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is installed with uvicorn[standard]
        return asyncio.run(_drive(host, targets, connections, seconds))
    return uvloop.run(_drive(host, targets, connections, seconds))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    upstream = LightUpstream(args.tokens, args.delay_ms)
    try:
        import uvloop

        uvloop.run(upstream.serve(args.host, args.port))
    except ImportError:  # pragma: no cover
        asyncio.run(upstream.serve(args.host, args.port))


if __name__ == "__main__":
    main()
