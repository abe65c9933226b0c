"""Traces: what recording a call costs on the hot path, how fast the write-behind buffer drains into
SQLite, and OTLP decode/encode throughput. In process, no server.

Baseline (same run): the Prometheus observations the inference path already makes per call
(`text_producer.observe_generation`: a counter and four histograms), so `record_vs_metrics` says what
tracing adds relative to the instrumentation we already pay for. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path

import orjson

from batchin.config import Settings
from batchin.core.accounts.auth import AuthService
from batchin.core.accounts.service import AccountService
from batchin.core.billing.limits import InMemoryRateLimiter
from batchin.core.context import CallContext
from batchin.core.serving.generation import GenerationStats
from batchin.core.serving.metrics import InferenceMetrics
from batchin.core.trace_context import continue_trace
from batchin.core.traces.otlp import decode_request
from batchin.core.traces.otlp_encode import encode_json, encode_protobuf
from batchin.core.traces.service import TraceService
from batchin.store.database import Database
from batchin.store.migrate import upgrade

CALLS = 20_000
SPANS = 5_000


def stats() -> GenerationStats:
    now = time.monotonic()
    s = GenerationStats(prompt_tokens=40, completion_tokens=120, queued_seconds=0.01)
    s.admitted_at, s.first_token_at, s.finished_at = now - 1.0, now - 0.8, now
    return s


def per_call_us(fn: object, count: int) -> float:
    began = time.perf_counter()
    for _ in range(count):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - began) / count * 1e6


async def main() -> None:
    data = Path(tempfile.mkdtemp(prefix="bench-traces-"))
    settings = Settings(data_dir=data)
    database = Database(settings.resolved_database_url)
    await upgrade(database)
    auth = AuthService(database, InMemoryRateLimiter(), cache_seconds=5.0)
    accounts = AccountService(database, auth, default_rpm=60, served_regions=())
    user = await accounts.create_user("b@example.com", "bench", 100)
    principal = await auth.authenticate(user.api_key)
    ctx = CallContext(principal=principal, request_id="req_bench", trace=continue_trace(None))
    timings = stats()

    metrics = InferenceMetrics()

    def observe() -> None:
        metrics.count_request("m", "chat.completions", "succeeded")
        series = metrics.series("m", "chat.completions")
        series.queue_seconds.observe(0.01)
        series.ttft_seconds.observe(0.2)
        series.inter_token_seconds.observe(0.006)
        series.tokens_per_second.observe(150.0)

    traces = TraceService(database, environment="bench", buffer_calls=CALLS * 2, flush_interval=3600)

    def record() -> None:
        ctx.trace = continue_trace(None)
        traces.record_generation(
            ctx,
            endpoint="chat.completions",
            model_id="m",
            timings=timings,
            status="succeeded",
            record_id=str(uuid.uuid4()),
            prompt_tokens=40,
            completion_tokens=120,
            cost_units=123_456,
        )

    per_call_us(observe, 2000)  # warm up
    metrics_us = per_call_us(observe, CALLS)
    # The hot path alone: what a request pays (the writer does not run until we yield).
    record_us = 0.0
    for _ in range(CALLS // 1000):
        record_us += per_call_us(record, 1000) / (CALLS // 1000)
        await traces.flush()
    # The whole pipeline as served: calls interleaved with the background writer, all threads' CPU
    # (aiosqlite writes in its own thread) per call.
    live = TraceService(database, environment="bench", flush_interval=0.05, buffer_calls=CALLS)
    cpu, began = time.process_time(), time.perf_counter()
    for i in range(CALLS):
        ctx.trace = continue_trace(None)
        live.record_generation(ctx, endpoint="chat.completions", model_id="m", timings=timings, status="ok")
        if i % 50 == 0:
            await asyncio.sleep(0)
    await live.close()
    pipeline_cpu_us = (time.process_time() - cpu) / CALLS * 1e6
    drain_seconds = time.perf_counter() - began
    assert live.stats()["written_calls"] == CALLS, live.stats()

    spans = await traces.export(principal.user_id, trace_id=None, limit=SPANS, protobuf=False)
    assert isinstance(spans, dict)
    as_json = orjson.dumps(spans)
    decoded = decode_request(
        as_json, content_type="application/json", content_encoding=None, max_bytes=1 << 30
    )
    as_proto = encode_protobuf(decoded.spans)

    def timed(fn: object) -> float:
        began = time.perf_counter()
        fn()  # type: ignore[operator]
        return time.perf_counter() - began

    limits = {"content_encoding": None, "max_bytes": 1 << 30}
    figures = {
        "bench": "traces",
        "calls": CALLS,
        "metrics_observe_us_per_call": round(metrics_us, 2),
        "record_call_us_per_call": round(record_us, 2),
        "record_vs_metrics": round(record_us / metrics_us, 2),
        "pipeline_cpu_us_per_call": round(pipeline_cpu_us, 1),
        "pipeline_vs_metrics": round(pipeline_cpu_us / metrics_us, 2),
        "sqlite_calls_per_s": round(CALLS / drain_seconds),
        "sqlite_spans_per_s": round(CALLS * 5 / drain_seconds),
        "otlp_json_decode_spans_per_s": round(
            SPANS / timed(lambda: decode_request(as_json, content_type="application/json", **limits))
        ),
        "otlp_protobuf_decode_spans_per_s": round(
            SPANS / timed(lambda: decode_request(as_proto, content_type="application/x-protobuf", **limits))
        ),
        "otlp_json_encode_spans_per_s": round(
            SPANS / timed(lambda: orjson.dumps(encode_json(decoded.spans)))
        ),
        "otlp_protobuf_encode_spans_per_s": round(SPANS / timed(lambda: encode_protobuf(decoded.spans))),
    }
    await traces.close()
    await auth.drain()
    await database.dispose()
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
