"""Same-run A/B of single pieces of the gateway's hot path, in isolation: a baseline checkout's
`batchin/` against this one's, each imported in its own child process, rounds alternating.

The whole-path A/B (bench/ab_gateway.py) reads a server's CPU from /proc in 10 ms ticks on a shared
machine, which hides changes of a few percent; here each piece runs alone, many times, timed with
the thread's CPU clock. Pieces (CPU µs per unit, median over rounds):

- `buffer_item`: one item through a generation's buffer (push by the producer task, read by the
  reader), 20 items per generation as in a 20-token stream;
- `disconnect_watch`: one `until_disconnect` around work that finishes (every non-streamed call);
- `observe`: a finished call's metrics (`text_producer.observe_generation`);
- `token_event`: one token's stream chunk made and framed as an SSE event (TokenChunks where the
  tree has it, else the chunk's dict through orjson);
- `sse_stream`: one 22-event stream (20 token chunks as bytes or dicts, as the tree makes them)
  through the whole Starlette app of `build_http_app` (middleware, routing, `sse_response`) to
  an ASGI `send`, the events' source waiting once per event as a stream waits for its engine;
- `json_call`: one non-streamed call through the whole app: `until_disconnect` around work that
  waits four times (admission, the engine, the receipt, the producer's end), a JSON response;
- `sse_stream_hot`, `json_call_hot`: the same two at the path of an inference route
  (/v1/chat/completions), served as the tree serves that path (past Starlette's layers where the
  tree has http_api/hot_routes.py);
- `usable_model`: the per-call model check (`usable_model`) of a loaded remote model;
- `call_spans`: one finished call's five spans built from its facts (`CallFacts.spans`, the
  trace writer's work per call);
- `text_delta`: one token's `TextDelta` made (as a runner makes one per token);
- `trace_rows_writer`, `trace_rows_loop`: one call's trace rows (summary and spans) written by the
  trace service's background writer into a SQLite store through the ledger's group-commit writer
  (batches of 500 calls, as served): the writer thread's CPU per call (its thread CPU clock), and
  the event loop's (the spans built, their rows made, the hand-off).

    python bench/ab_parts.py --base /tmp/base-checkout [--rounds 7] [--pieces json_call_hot,...]

Prints one JSON line: per piece the median of each side and their ratio (B / A).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PIECES = (
    "buffer_item",
    "disconnect_watch",
    "observe",
    "token_event",
    "sse_stream",
    "json_call",
    "sse_stream_hot",
    "json_call_hot",
    "usable_model",
    "call_spans",
    "text_delta",
    "trace_rows_writer",
    "trace_rows_loop",
)
_HOT_PATH = "/v1/chat/completions"


def _route(app: Any, path: str, endpoint: Any) -> None:
    """`endpoint` first at `path`, served as the tree serves that path: at an inference route's
    path a tree with hot routes (http_api/hot_routes.py) serves it past Starlette's layers."""
    from starlette.routing import Route

    route = Route(path, endpoint, methods=["POST"])
    app.router.routes.insert(0, route)
    hot = getattr(app, "hot_routes", None)
    if hot is not None and path in hot.routes:
        hot.routes[path] = route


async def _buffer_item(generations: int, items: int = 20) -> float:
    from batchin.core.serving.generation import BufferedStream

    async def produce(stream: BufferedStream[int], opened: asyncio.Future[None]) -> None:
        stream.open(opened)
        for i in range(items):
            await stream.push(i)
            await asyncio.sleep(0)  # the engine's next token arrives in a later turn of the loop

    start = time.thread_time()
    for _ in range(generations):
        stream: BufferedStream[int] = BufferedStream(buffer_size=1024, stall_timeout=30)
        await stream.start(produce)
        async for _item in stream:
            pass
    return (time.thread_time() - start) / (generations * items)


async def _disconnect_watch(calls: int) -> float:
    from starlette.requests import Request

    from batchin.http_api.streaming import until_disconnect

    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await never.wait()
        return {"type": "http.disconnect"}

    request = Request({"type": "http", "method": "POST", "headers": [], "path": "/"}, receive)

    async def work() -> int:
        await asyncio.sleep(0)
        return 1

    start = time.thread_time()
    for _ in range(calls):
        await until_disconnect(request, work())
    return (time.thread_time() - start) / calls


def _observe(calls: int) -> float:
    from batchin.core.serving.generation import TextGeneration
    from batchin.core.serving.metrics import InferenceMetrics

    metrics = InferenceMetrics()
    try:
        from batchin.core.serving.text_producer import observe_generation
    except ImportError:  # a base tree from before the producer had its own module
        from batchin.core.serving.inference import InferenceService

        holder = type("Holder", (), {"_metrics": metrics})()

        def observe_generation(_m: Any, *args: Any) -> None:
            InferenceService._observe(holder, *args)  # type: ignore[attr-defined]

    gen = TextGeneration(buffer_size=4, stall_timeout=1, prompt_tokens=10)
    gen.stats.admitted_at, gen.stats.first_token_at, gen.stats.finished_at = 1.0, 1.01, 1.1
    gen.stats.completion_tokens = 20
    start = time.thread_time()
    for _ in range(calls):
        observe_generation(metrics, "remote-bench", "chat.completions", gen, "succeeded")
    return (time.thread_time() - start) / calls


def _token_maker() -> Any:
    """One token's chunk as the tree's stream makes it: bytes from TokenChunks, or a dict."""
    from batchin.core.serving import text_serving

    template = {"id": "chatcmpl-0123456789abcdef01234567", "object": "chat.completion.chunk"}
    template |= {"created": 1700000000, "model": "remote-bench"}
    if hasattr(text_serving, "TokenChunks"):
        chunks = text_serving.TokenChunks(template, field=b'"delta":{"content":', close=b"}")
        return lambda text: chunks.text(0, text)
    choice = {"index": 0, "finish_reason": None, "logprobs": None}
    return lambda text: {**template, "choices": [{**choice, "delta": {"content": text}}]}


def _token_event(tokens: int) -> float:
    from batchin.http_api import streaming

    # `_events` frames a batch (trees where streams send what arrived together in one write).
    frame = getattr(streaming, "_event", None) or (lambda item: streaming._events([item]))
    make = _token_maker()
    start = time.thread_time()
    for _ in range(tokens):
        frame(make(" token"))
    return (time.thread_time() - start) / tokens


async def _sse_stream(streams: int, path: str = "/bench-sse") -> float:
    from starlette.requests import Request
    from starlette.responses import Response

    from batchin.http_api import streaming
    from batchin.http_api.app import build_http_app
    from batchin.http_api.streaming import sse_response

    make = _token_maker()
    # A tree whose sse_response takes batches (lists) gets each event as a batch of one.
    wrap = (lambda item: [item]) if hasattr(streaming, "_events") else (lambda item: item)

    async def items() -> Any:
        yield wrap({"id": "x", "object": "chat.completion.chunk", "choices": []})
        for _ in range(20):
            await asyncio.sleep(0)  # the stream waits for its next token
            yield wrap(make(" token"))
        yield wrap({"id": "x", "object": "chat.completion.chunk", "choices": [], "finish_reason": "stop"})

    async def closed() -> None:
        return None

    async def endpoint(request: Request) -> Response:
        return sse_response(request, items(), headers={"x-a": "1"}, on_close=closed)

    app = build_http_app()
    # First, as the inference routes are: the route scan is not what this piece measures.
    _route(app, path, endpoint)
    scope = {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""}
    scope |= {"http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80), "root_path": ""}
    never = asyncio.Event()
    sent = 0

    async def receive() -> dict[str, Any]:
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal sent
        sent += 1

    start = time.thread_time()
    for _ in range(streams):
        await app(dict(scope), receive, send)
    return (time.thread_time() - start) / streams


async def _json_call(calls: int, path: str = "/bench-json") -> float:
    from starlette.requests import Request
    from starlette.responses import Response

    from batchin.http_api.app import build_http_app
    from batchin.http_api.rendering import render
    from batchin.http_api.streaming import until_disconnect

    async def work() -> dict[str, Any]:
        for _ in range(4):
            await asyncio.sleep(0)
        return {"id": "chatcmpl-1", "object": "chat.completion", "choices": []}

    async def endpoint(request: Request) -> Response:
        return render(await until_disconnect(request, work()), headers={"x-a": "1"})

    app = build_http_app()
    _route(app, path, endpoint)
    scope = {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""}
    scope |= {"http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80), "root_path": ""}
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        return None

    start = time.thread_time()
    for _ in range(calls):
        await app(dict(scope), receive, send)
    return (time.thread_time() - start) / calls


async def _usable_model(calls: int) -> float:
    from batchin.core.context import Principal
    from batchin.core.serving.model_lookup import usable_model
    from batchin.models.catalog import parse_catalog
    from batchin.models.registry import ModelRegistry

    # No health checker: the route counts as healthy, as it does between two checks.
    text = remote_catalog_text("http://127.0.0.1:9/v1") + "engine_options = { health_check_interval = 0 }\n"
    registry = ModelRegistry(parse_catalog(text, source="bench"))
    await registry.text_runner("remote-bench")
    principal = Principal("user-1", "key-1", "sk-bench", 0, None)
    start = time.thread_time()
    for _ in range(calls):
        usable_model(registry, "remote-bench", "chat", principal)
    seconds = (time.thread_time() - start) / calls
    await registry.close()
    return seconds


def remote_catalog_text(url: str) -> str:
    """bench/harness.py's remote catalog, the model's own table last (so a line can be added)."""
    return (
        f'[models.remote-bench.upstream]\nurls = ["{url}"]\nmodel = "fake-model"\n'
        "[models.remote-bench.pricing]\ninput_per_1m = 0.01\noutput_per_1m = 0.02\n"
        '[models.remote-bench]\nkind = ["chat", "completion"]\nengine = "remote"\nlicence = "test"\n'
        'context_length = 8192\nstatus = "always_on"\n'
    )


def _call_spans(calls: int) -> float:
    from batchin.core.trace_context import TraceContext
    from batchin.core.traces.builder import CallFacts

    facts = CallFacts(
        TraceContext("a" * 32, "b" * 16, None),
        *("user-1", "req-1", "run-1", "default", None, "chat.completions", "remote-bench"),
        *("default-route", "upstream", "succeeded", "rec-1", 10, 20, 1234, 0.001),
        *(1_000_000_000, 1_001_000_000, 1_002_000_000, 1_100_000_000),
    )
    start = time.thread_time()
    for _ in range(calls):
        facts.spans("production")
    return (time.thread_time() - start) / calls


def _text_delta(tokens: int) -> float:
    from batchin.models.base import TextDelta

    start = time.thread_time()
    for _ in range(tokens):
        TextDelta(" token")
    return (time.thread_time() - start) / tokens


async def _trace_rows(calls: int) -> tuple[float, float]:
    """(writer thread, event loop) CPU seconds per call of writing `calls` calls' trace rows."""
    import tempfile

    from batchin.config import Settings
    from batchin.core.accounts.auth import AuthService
    from batchin.core.accounts.service import AccountService
    from batchin.core.billing.limits import InMemoryRateLimiter
    from batchin.core.context import CallContext
    from batchin.core.serving.generation import GenerationStats
    from batchin.core.trace_context import continue_trace
    from batchin.core.traces.service import TraceService
    from batchin.store.database import Database
    from batchin.store.group_commit import GroupCommitWriter, sqlite_file
    from batchin.store.migrate import upgrade

    database = Database(
        Settings(data_dir=Path(tempfile.mkdtemp(prefix="ab-trace-rows-"))).resolved_database_url
    )
    await upgrade(database)
    auth = AuthService(database, InMemoryRateLimiter(), cache_seconds=5.0)
    accounts = AccountService(database, auth, default_rpm=60, served_regions=())
    user = await accounts.create_user("b@example.com", "bench", 100)
    ctx = CallContext(
        principal=await auth.authenticate(user.api_key), request_id="req", trace=continue_trace(None)
    )
    path = sqlite_file(database)
    assert path is not None
    writer = GroupCommitWriter(path)
    traces = TraceService(
        database, environment="bench", buffer_calls=calls, flush_interval=3600, writer=writer
    )
    now = time.monotonic()
    timings = GenerationStats(prompt_tokens=40, completion_tokens=120, queued_seconds=0.01)
    timings.admitted_at, timings.first_token_at, timings.finished_at = now - 1.0, now - 0.8, now

    async def batch(count: int) -> None:
        for _ in range(count):
            ctx.trace = continue_trace(None)
            traces.record_generation(
                ctx,
                endpoint="chat.completions",
                model_id="m",
                timings=timings,
                status="succeeded",
                record_id="rec-1",
                prompt_tokens=40,
                completion_tokens=120,
                cost_units=123_456,
            )
        await traces.flush()

    await batch(500)  # warm-up: the writer's thread starts
    thread = writer._thread
    if thread is None or thread.ident is None:
        raise RuntimeError("the group-commit writer's thread did not start")
    clock = time.pthread_getcpuclockid(thread.ident)
    writer_start, loop_start = time.clock_gettime(clock), time.thread_time()
    for _ in range(calls // 500):
        await batch(500)
    writer_seconds, loop_seconds = time.clock_gettime(clock) - writer_start, time.thread_time() - loop_start
    await traces.close()
    await writer.close()
    await database.dispose()
    return writer_seconds / calls, loop_seconds / calls


def child(piece: str) -> None:
    """In the child: time one piece with the `batchin` on sys.path; print CPU µs per unit."""
    if piece == "buffer_item":
        asyncio.run(_buffer_item(50))  # warm-up
        seconds = asyncio.run(_buffer_item(1000))
    elif piece == "disconnect_watch":
        asyncio.run(_disconnect_watch(1000))
        seconds = asyncio.run(_disconnect_watch(20000))
    elif piece == "token_event":
        _token_event(2000)
        seconds = _token_event(100000)
    elif piece == "sse_stream":
        asyncio.run(_sse_stream(50))
        seconds = asyncio.run(_sse_stream(2000))
    elif piece == "json_call":
        asyncio.run(_json_call(100))
        seconds = asyncio.run(_json_call(10000))
    elif piece == "sse_stream_hot":
        asyncio.run(_sse_stream(50, _HOT_PATH))
        seconds = asyncio.run(_sse_stream(2000, _HOT_PATH))
    elif piece == "json_call_hot":
        asyncio.run(_json_call(100, _HOT_PATH))
        seconds = asyncio.run(_json_call(10000, _HOT_PATH))
    elif piece == "usable_model":
        asyncio.run(_usable_model(1000))
        seconds = asyncio.run(_usable_model(100000))
    elif piece == "call_spans":
        _call_spans(1000)
        seconds = _call_spans(50000)
    elif piece in ("trace_rows_writer", "trace_rows_loop"):
        writer_seconds, loop_seconds = asyncio.run(_trace_rows(20000))
        seconds = writer_seconds if piece == "trace_rows_writer" else loop_seconds
    elif piece == "text_delta":
        _text_delta(10000)
        seconds = _text_delta(500000)
    else:
        _observe(1000)
        seconds = _observe(50000)
    print(json.dumps(seconds * 1e6))


def run_side(tree: str, piece: str) -> float:
    env = {**os.environ, "PYTHONPATH": tree}
    done = subprocess.run(
        [sys.executable, __file__, "--child", piece], env=env, capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", help="directory holding the baseline's batchin/")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--pieces", default=",".join(PIECES))
    parser.add_argument("--child", choices=PIECES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    if not args.base:
        parser.error("--base is required")
    sides = {"A": str(Path(args.base).resolve()), "B": str(ROOT)}
    result: dict[str, Any] = {"bench": "gateway_parts_ab", "base": sides["A"], "rounds": args.rounds}
    for piece in args.pieces.split(","):
        samples: dict[str, list[float]] = {"A": [], "B": []}
        for round_no in range(args.rounds):
            for side in ("A", "B") if round_no % 2 == 0 else ("B", "A"):
                samples[side].append(run_side(sides[side], piece))
        a, b = statistics.median(samples["A"]), statistics.median(samples["B"])
        result[piece] = {"A_cpu_us": round(a, 2), "B_cpu_us": round(b, 2), "ratio": round(b / a, 2)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
