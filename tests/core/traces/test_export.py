"""Pushing our spans to an external OTLP/HTTP collector: a real HTTP server on 127.0.0.1 that
parses each body with the official ExportTraceServiceRequest, and answers as it is told to."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from batchin.config import Settings
from batchin.core.context import CallContext
from batchin.core.serving.generation import GenerationStats
from batchin.core.trace_context import continue_trace
from batchin.core.traces.export import OtlpHttpExporter, parse_headers, traces_url
from batchin.core.traces.service import TraceService
from batchin.services import Services
from tests.conftest import MakeUser


@dataclass
class FakeCollector:
    url: str = ""
    requests: list[tuple[dict[str, str], ExportTraceServiceRequest]] = field(default_factory=list)
    script: list[int] = field(default_factory=list)  # statuses to answer next, then 200
    retry_after: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def span_names(self) -> list[str]:
        return [
            span.name
            for _, request in self.requests
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.span_names()) < count:
            assert time.monotonic() < deadline, self.span_names()
            await asyncio.sleep(0.01)


def _handler(collector: FakeCollector) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with collector.lock:
                status = collector.script.pop(0) if collector.script else 200
            if self.path != "/v1/traces" or self.headers["Content-Type"] != "application/x-protobuf":
                status = 404
            if status == 200:
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                collector.requests.append((dict(self.headers.items()), request))
                payload = ExportTraceServiceResponse().SerializeToString()
            else:
                payload = b""
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            if status != 200 and collector.retry_after:
                self.send_header("Retry-After", collector.retry_after)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def collector() -> Iterator[FakeCollector]:
    fake = FakeCollector()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def ctx_for(services: Services, make_user: MakeUser, traceparent: str | None = None) -> CallContext:
    user = await make_user()
    principal = await services.auth.authenticate(user.api_key)
    return CallContext(
        principal=principal, request_id=f"req_{uuid.uuid4().hex}", trace=continue_trace(traceparent)
    )


def record(traces: TraceService, ctx: CallContext) -> None:
    stats = GenerationStats(prompt_tokens=3, completion_tokens=2)
    stats.admitted_at = stats.first_token_at = stats.finished_at = time.monotonic()
    traces.record_generation(
        ctx, endpoint="chat.completions", model_id="m", timings=stats, status="succeeded"
    )


def test_endpoint_and_headers_follow_the_otel_conventions() -> None:
    assert traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert traces_url("http://c:4318/") == "http://c:4318/v1/traces"
    assert traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"
    assert parse_headers("api-key=s%3Dcret, x-team = ml ,") == {"api-key": "s=cret", "x-team": "ml"}
    assert parse_headers(None) == {}
    with pytest.raises(ValueError, match="key=value"):
        parse_headers("just-a-token")


async def test_spans_reach_the_collector_as_protobuf_with_headers(
    services: Services, make_user: MakeUser, collector: FakeCollector
) -> None:
    exporter = OtlpHttpExporter(collector.url, headers={"x-api-key": "k1"}, interval=0.05)
    traces = TraceService(services.database, environment="test", sink=exporter)
    ctx = await ctx_for(services, make_user)
    record(traces, ctx)
    await collector.wait_for(5)
    await traces.close()
    headers, request = collector.requests[0]
    assert headers["x-api-key"] == "k1"
    assert collector.span_names() == [
        "batchin.call",
        "batchin.admission",
        "batchin.engine",
        "batchin.first_token",
        "batchin.completion",
    ]
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == ctx.trace.trace_id
    assert span.span_id.hex() == ctx.trace.span_id
    assert exporter.stats() == {
        "pending_spans": 0,
        "exported_spans": 5,
        "dropped_spans": 0,
        "rejected_spans": 0,
    }


async def test_unavailable_collector_is_retried_with_backoff(
    services: Services, make_user: MakeUser, collector: FakeCollector
) -> None:
    collector.script = [503, 429, 502]
    exporter = OtlpHttpExporter(collector.url, interval=0.01, backoff=0.01, max_backoff=0.05)
    ctx = await ctx_for(services, make_user)
    traces = TraceService(services.database, environment="test", sink=exporter)
    record(traces, ctx)
    await collector.wait_for(5)
    await traces.close()
    assert collector.script == []
    assert exporter.stats()["exported_spans"] == 5


async def test_a_refusing_collector_loses_the_batch_not_the_caller(
    services: Services, make_user: MakeUser, collector: FakeCollector
) -> None:
    collector.script = [400]
    exporter = OtlpHttpExporter(collector.url, interval=0.01, backoff=0.01)
    traces = TraceService(services.database, environment="test", sink=exporter)
    ctx = await ctx_for(services, make_user)
    record(traces, ctx)
    for _ in range(500):
        if exporter.stats()["dropped_spans"]:
            break
        await asyncio.sleep(0.01)
    await traces.close()
    assert exporter.stats()["dropped_spans"] == 5
    assert collector.requests == []
    assert (await services.traces.get_trace(ctx.principal.user_id, ctx.trace.trace_id)).trace_id


async def test_a_down_collector_never_blocks_recording(services: Services, make_user: MakeUser) -> None:
    exporter = OtlpHttpExporter("http://127.0.0.1:9", interval=0.01, backoff=5, buffer_spans=12)
    traces = TraceService(services.database, environment="test", sink=exporter, flush_interval=0.01)
    ctx = await ctx_for(services, make_user)
    began = time.perf_counter()
    for _ in range(4):
        record(traces, ctx)
    assert time.perf_counter() - began < 0.1
    await traces.flush()  # the writer builds the spans and offers them to the exporter
    assert exporter.stats()["dropped_spans"] >= 8  # 20 offered, at most 12 held
    closing = time.perf_counter()
    await traces.close()  # gives up at once rather than sleeping out the backoff
    assert time.perf_counter() - closing < 3


async def test_unsampled_calls_are_stored_but_not_pushed(
    services: Services, make_user: MakeUser, collector: FakeCollector
) -> None:
    exporter = OtlpHttpExporter(collector.url, interval=0.01)
    traces = TraceService(services.database, environment="test", sink=exporter)
    unsampled = await ctx_for(services, make_user, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
    record(traces, unsampled)
    await traces.close()
    assert collector.requests == []
    assert (await services.traces.list_traces(unsampled.principal.user_id, limit=1)).items


async def test_the_endpoint_setting_turns_the_exporter_on(services: Services, settings: Settings) -> None:
    traces = TraceService.open(
        settings.model_copy(update={"otlp_endpoint": "http://c:4318", "otlp_headers": "a=b"}),
        services.database,
    )
    assert isinstance(traces.sink, OtlpHttpExporter)
    assert traces.sink.url == "http://c:4318/v1/traces"
    await traces.close()
    assert TraceService.open(settings, services.database).sink is None
