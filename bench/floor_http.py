"""The HTTP server's own floor under the gateway: what uvicorn (httptools, as `batchin serve` runs
it) costs per request with an ASGI app that does nothing but read the body and answer.

The app answers a chat call's shape: the body of a non-streamed completion (~330 bytes) with the
12 response headers a BatchIn chat call has, or a 22-event SSE stream whose events leave one per
loop turn, as a stream's tokens do (without the 5 ms between them: the CPU is what is measured). The
server is pinned to core 0, the client (bench_gateway's, the same as every gateway bench) to core 1.
Whatever BatchIn costs above these figures is the app; these are what a different app could not
save without a different HTTP server.

    python bench/floor_http.py [--calls 2000] [--rounds 3]

Prints one JSON line: server CPU ms per chat call and per stream at c=16, median over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_gateway import measure
from bench.harness import free_port, stop, wait_ready

_BODY = json.dumps(
    {
        "id": "chatcmpl-0123456789abcdef01234567",
        "object": "chat.completion",
        "created": 1764800000,
        "model": "remote-bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "tok " * 20, "tool_calls": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 20, "total_tokens": 29},
    }
).encode()
_HEADERS = [
    (b"traceparent", b"00-0192f0a1b2c3d4e5f60718293a4b5c6d-0123456789abcdef-01"),
    (b"x-batchin-run-id", b"run_0123456789abcdef01234567"),
    (b"x-batchin-prompt-version", b"default"),
    (b"x-vaas-record-id", b"0192f0a1-b2c3-7d4e-95f6-0718293a4b5c"),
    (b"x-vaas-signature", b"ab" * 64),
    (b"x-vaas-publickey", b"cd" * 32),
    (b"content-length", str(len(_BODY)).encode()),
    (b"content-type", b"application/json"),
    (b"x-ratelimit-limit", b"1000000"),
    (b"x-ratelimit-remaining", b"999999"),
    (b"x-ratelimit-reset", b"0.000"),
    (b"x-request-id", b"req_0123456789abcdef0123456789abcdef"),
]
_CHUNK = b'{"id":"chatcmpl-0","object":"chat.completion.chunk","choices":[{"delta":{"content":"tok"}}]}'
_EVENT = b"data: " + _CHUNK + b"\r\n\r\n"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the body, then a JSON answer, or SSE events when the body asks for a stream."""
    if scope["type"] == "lifespan":
        while True:
            kind = (await receive())["type"]
            await send({"type": kind + ".complete"})
            if kind == "lifespan.shutdown":
                return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if b'"stream": true' not in body and b'"stream":true' not in body:
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": _BODY})
        return
    headers = [h for h in _HEADERS if h[0] != b"content-length"][:-3]
    headers.append((b"content-type", b"text/event-stream; charset=utf-8"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for _ in range(21):
        await send({"type": "http.response.body", "body": _EVENT, "more_body": True})
        await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b"data: [DONE]\r\n\r\n", "more_body": False})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.floor_http:app", "--port", str(port)]
    command += ["--no-access-log", "--log-level", "warning", "--http", "httptools", "--loop", "uvloop"]
    root = str(Path(__file__).resolve().parent.parent)
    process = subprocess.Popen(
        ["taskset", "-c", "0", *command], cwd=root, env={**os.environ, "PYTHONPATH": root}
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/", timeout=60)
        target = (f"http://127.0.0.1:{port}/v1/chat/completions", {"Authorization": "Bearer x"}, "m")
        measure(target, process.pid, stream=False, concurrency=4, count=100)  # warm-up
        chat, streams = [], []
        for _ in range(args.rounds):
            chat.append(measure(target, process.pid, stream=False, concurrency=16, count=args.calls))
            streams.append(measure(target, process.pid, stream=True, concurrency=16, count=args.calls // 4))
    finally:
        stop(process)
    print(
        json.dumps(
            {
                "bench": "floor_http",
                "server": "uvicorn httptools uvloop",
                "chat_c16_cpu_ms": round(statistics.median(m.per_call_cpu_ms() for m in chat), 4),
                "stream_c16_cpu_ms": round(statistics.median(m.per_call_cpu_ms() for m in streams), 4),
            }
        )
    )


if __name__ == "__main__":
    main()
