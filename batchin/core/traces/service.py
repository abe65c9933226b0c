"""The unified trace view: spans of our own calls and spans users send over OTLP, per tenant.

The inference path calls `record_call` (or `record_generation`) once per call. That only appends
to an in-memory buffer; a background task writes the buffer in batches, one transaction each, so
the hot path never waits on the database. The buffer is bounded: if the database falls behind,
the oldest pending calls are dropped and counted (`stats()["dropped_calls"]`). `close()` writes
what is left. Reads write the buffer first, so a caller sees its own calls at once.

OTLP ingest (`ingest_otlp`) writes before it answers: the sender's success means stored. Spans are
keyed by (user, trace, span), so an exporter retrying a batch stores nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from batchin.config import Settings
from batchin.core.clock import isoformat, utcnow
from batchin.core.context import CallContext
from batchin.core.traces.builder import CallFacts, CallTimings, call_spans
from batchin.core.traces.export import OtlpHttpExporter, parse_headers
from batchin.core.traces.otlp import Span, decode_request, plain_attributes
from batchin.core.traces.otlp_encode import encode_json, encode_protobuf
from batchin.core.traces.store import SUMMARY_FIELDS, TraceRecord, TraceStore
from batchin.core.traces.views import CALL_SPAN, CallOutcome, TraceOverview, call_outcome
from batchin.core.write_behind import BufferStats, WriteBehind
from batchin.errors import InvalidRequest, NotFound
from batchin.protocol.traces import SpanOut, SpanStatus, TraceDetail, TraceItem, TraceList
from batchin.store.database import Database
from batchin.store.group_commit import GroupCommitWriter

log = logging.getLogger("batchin.traces")

MAX_LIST = 100
MAX_EXPORT_SPANS = 10_000
_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
_STATUSES = ("unset", "ok", "error")

__all__ = ["MAX_EXPORT_SPANS", "MAX_LIST", "CallTimings", "SpanSink", "TraceService", "call_spans"]


class SpanSink(Protocol):
    """Where our own spans go besides the store (the OTLP push exporter)."""

    def offer(self, spans: Sequence[Span]) -> None: ...

    async def close(self) -> None: ...


class TraceService:
    def __init__(
        self,
        database: Database,
        *,
        environment: str,
        buffer_calls: int = 10_000,
        batch_calls: int = 500,
        flush_interval: float = 0.2,
        otlp_max_bytes: int = 4 * 1024 * 1024,
        sink: SpanSink | None = None,
        writer: GroupCommitWriter | None = None,
    ) -> None:
        """`writer`: the ledger's SQLite group-commit writer, which trace rows then share (it stays
        the ledger's to close)."""
        self._store = TraceStore(database, writer)
        self.environment = environment
        self.otlp_max_bytes = otlp_max_bytes
        self.sink = sink
        # Each call's summary and its spans, or the facts to build them from when written.
        self._buffer: WriteBehind[tuple[TraceRecord, Sequence[Span] | CallFacts]] = WriteBehind(
            self._write,
            capacity=buffer_calls,
            batch=batch_calls,
            interval=flush_interval,
            what="traced calls",
            log=log,
        )

    @classmethod
    def open(
        cls, settings: Settings, database: Database, writer: GroupCommitWriter | None = None
    ) -> TraceService:
        """As configured: with the OTLP push exporter when `otlp_endpoint` is set."""
        sink = None
        if settings.otlp_endpoint:
            sink = OtlpHttpExporter(settings.otlp_endpoint, headers=parse_headers(settings.otlp_headers))
        return cls(
            database,
            environment=settings.environment,
            buffer_calls=settings.trace_buffer_calls,
            flush_interval=settings.trace_flush_seconds,
            otlp_max_bytes=settings.otlp_max_body_bytes,
            sink=sink,
            writer=writer,
        )

    # -- the hot path ------------------------------------------------------------------------------

    def record_call(
        self,
        ctx: CallContext,
        *,
        model_id: str,
        route_id: str,
        provider: str,
        spans: Sequence[Span],
        record_id: str | None = None,
    ) -> None:
        """Queue one call's spans and its trace summary; never waits. Call from the event loop."""
        if self.sink is not None and ctx.trace.sampled:
            self.sink.offer(spans)
        self._enqueue(
            ctx, spans, model_id=model_id, route_id=route_id, provider=provider, record_id=record_id
        )

    def _enqueue(
        self,
        ctx: CallContext,
        spans: Sequence[Span] | CallFacts,
        *,
        model_id: str,
        route_id: str,
        provider: str,
        record_id: str | None,
    ) -> None:
        summary = TraceRecord(
            trace_id=ctx.trace.trace_id,
            user_id=ctx.principal.user_id,
            source="batchin",
            created_at=utcnow(),
            run_id=ctx.run_id,
            record_id=record_id,
            route_id=route_id,
            provider=provider,
            environment=self.environment,
            prompt_version_id=ctx.prompt_version,
            model_id=model_id,
        )
        self._buffer.offer((summary, spans))

    def record_generation(
        self,
        ctx: CallContext,
        *,
        endpoint: str,
        model_id: str,
        timings: CallTimings,
        status: str,
        route_id: str = "default-route",
        provider: str = "batchin-managed",
        record_id: str | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost_units: int = 0,
        engine_done_at: float | None = None,
    ) -> None:
        """What the inference path calls when a call ends. Only the call's facts are captured here
        (one small object); its spans are built by the background writer. `engine_done_at`: the
        engine's return, when an encode span follows it (CallFacts.capture)."""
        facts = CallFacts.capture(
            ctx,
            endpoint=endpoint,
            model_id=model_id,
            route_id=route_id,
            provider=provider,
            timings=timings,
            status=status,
            record_id=record_id,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_units=cost_units,
            engine_done_at=engine_done_at,
        )
        self._enqueue(
            ctx, facts, model_id=model_id, route_id=route_id, provider=provider, record_id=record_id
        )

    async def flush(self) -> None:
        """Write everything queued so far."""
        await self._buffer.flush()

    async def _write(self, batch: list[tuple[TraceRecord, Sequence[Span] | CallFacts]]) -> None:
        calls: list[tuple[str, Sequence[Span]]] = []
        packed: list[tuple[Any, ...]] = []
        for summary, spans in batch:
            if isinstance(spans, CallFacts) and not (self.sink is not None and spans.trace.sampled):
                # Nothing else wants this call's Span objects: its row is packed from the facts.
                packed.append(spans.packed(summary.user_id, self.environment))
            else:
                calls.append((summary.user_id, self._built(spans)))
        await self._store.write([summary for summary, _ in batch], [], calls, packed=packed)

    def _built(self, spans: Sequence[Span] | CallFacts) -> Sequence[Span]:
        if not isinstance(spans, CallFacts):
            return spans
        built = spans.spans(self.environment)
        if self.sink is not None and spans.trace.sampled:
            self.sink.offer(built)
        return built

    async def close(self) -> None:
        """Stop the writer after it has written what is queued (never cancel it mid-batch)."""
        await self._buffer.close()
        if self.sink is not None:
            await self.sink.close()

    def buffer_stats(self) -> dict[str, BufferStats]:
        """The write-behind buffers' counts by name, for /metrics."""
        buffers = {"traces": self._buffer.stats()}
        if isinstance(self.sink, OtlpHttpExporter):
            buffers["otlp_export"] = self.sink.buffer_stats()
        return buffers

    def stats(self) -> dict[str, int]:
        return {
            "pending_calls": self._buffer.pending,
            "written_calls": self._buffer.written,
            "dropped_calls": self._buffer.dropped,
            "failed_calls": self._buffer.failed,
        }

    # -- OTLP in and out ---------------------------------------------------------------------------

    async def ingest_otlp(
        self, ctx: CallContext, body: bytes, *, content_type: str | None, content_encoding: str | None
    ) -> tuple[int, str]:
        """Merge an OTLP/HTTP export into the caller's traces; returns (rejected spans, reason)."""
        decoded = decode_request(
            body, content_type=content_type, content_encoding=content_encoding, max_bytes=self.otlp_max_bytes
        )
        if decoded.spans:
            now, user_id = utcnow(), ctx.principal.user_id
            summaries = {
                span.trace_id: TraceRecord(span.trace_id, user_id, "otlp", now, **_summary_hints(span))
                for span in reversed(decoded.spans)  # the first span of a trace gives its hints
            }
            # Our calls' packs first: a sent span that repeats one of their span ids (a client
            # echoing the call span of a traceparent it was just answered with) is then dropped by
            # the store as already stored, instead of kept beside a pack written after it. Calls
            # buffered by another API process (`serve --workers`) are not flushed from here.
            await self.flush()
            await self._store.write(list(summaries.values()), [(user_id, span) for span in decoded.spans])
        return decoded.rejected, decoded.error_message

    async def export(
        self, user_id: str, *, trace_id: str | None, limit: int, protobuf: bool
    ) -> bytes | dict[str, Any]:
        """The caller's spans (of one trace, or the newest `limit`) as OTLP protobuf bytes or JSON."""
        if not 1 <= limit <= MAX_EXPORT_SPANS:
            raise InvalidRequest(f"limit must be between 1 and {MAX_EXPORT_SPANS}.", param="limit")
        key = None if trace_id is None else _trace_id(trace_id)
        await self.flush()
        spans = await self._store.spans(user_id, trace_id=key, limit=limit)
        return encode_protobuf(spans) if protobuf else encode_json(spans)

    # -- the trace view ----------------------------------------------------------------------------

    async def list_traces(self, user_id: str, *, limit: int) -> TraceList:
        if not 1 <= limit <= MAX_LIST:
            raise InvalidRequest(f"limit must be between 1 and {MAX_LIST}.", param="limit")
        await self.flush()
        return TraceList(items=[_item(r) for r in await self._store.newest(user_id, limit)])

    async def browse(
        self, user_id: str, *, limit: int, model_id: str | None = None, failed: bool | None = None
    ) -> list[TraceOverview]:
        """The console's trace list: newest first, filtered by model and by whether a span failed,
        each with its span count and duration."""
        if not 1 <= limit <= MAX_LIST:
            raise InvalidRequest(f"limit must be between 1 and {MAX_LIST}.", param="limit")
        await self.flush()
        records = await self._store.newest(user_id, limit, model_id=model_id, failed=failed)
        totals = await self._store.span_totals(user_id, [r.trace_id for r in records])
        overviews = []
        for record in records:
            found = totals.get(record.trace_id)
            duration = max(0, found.end_unix_nano - found.start_unix_nano) / 1e6 if found else 0.0
            overviews.append(
                TraceOverview(
                    _item(record), found.spans if found else 0, duration, found.failed if found else False
                )
            )
        return overviews

    async def call_outcomes(self, user_id: str, trace_ids: list[str]) -> dict[str, CallOutcome]:
        """The user's calls in these traces by audit record id: endpoint, status and cost."""
        await self.flush()
        spans = await self._store.named_spans(user_id, sorted(set(trace_ids)), CALL_SPAN)
        outcomes = (call_outcome(span) for span in spans)
        return {o.record_id: o for o in outcomes if o is not None}

    async def get_trace(self, user_id: str, trace_id: str) -> TraceDetail:
        """One of the caller's traces with its spans, oldest first; anyone else's → NotFound."""
        key = trace_id.strip().lower()
        found = None
        if _is_trace_id(key):
            await self.flush()
            found = await self._store.trace(user_id, key)
        if found is None:
            raise NotFound(f"Trace '{trace_id}' not found.")
        record, spans = found
        return TraceDetail(**_item(record).model_dump(), spans=[_span_out(s) for s in spans])


def _item(record: TraceRecord) -> TraceItem:
    return TraceItem(
        trace_id=record.trace_id,
        source="otlp" if record.source == "otlp" else "batchin",
        created_at=isoformat(record.created_at) or "",
        **{name: getattr(record, name) for name in SUMMARY_FIELDS},
    )


def _span_out(span: Span) -> SpanOut:
    return SpanOut(
        trace_id=span.trace_id,
        span_id=span.span_id,
        parent_span_id=span.parent_span_id,
        name=span.name,
        kind=_KINDS[span.kind] if 0 <= span.kind < len(_KINDS) else "unspecified",
        start_time_unix_nano=str(span.start_unix_nano),
        end_time_unix_nano=str(span.end_unix_nano),
        duration_ms=max(0, span.end_unix_nano - span.start_unix_nano) / 1e6,
        status=SpanStatus(
            code=_STATUSES[span.status_code] if 0 <= span.status_code < len(_STATUSES) else "unset",
            message=span.status_message,
        ),
        attributes=plain_attributes(span.attributes),
        resource=plain_attributes(span.resource_attributes),
        events=span.events,
        links=span.links,
        source="otlp" if span.source == "otlp" else "batchin",
    )


def _summary_hints(span: Span) -> dict[str, Any]:
    """What an OTLP span says about its trace, in the attributes GenAI instrumentation uses."""
    attributes = {kv["key"]: kv.get("value", {}).get("stringValue") for kv in span.attributes}
    resource = {kv["key"]: kv.get("value", {}).get("stringValue") for kv in span.resource_attributes}
    model = attributes.get("batchin.model_id") or attributes.get("gen_ai.request.model")
    environment = resource.get("deployment.environment.name") or resource.get("deployment.environment")
    return {"model_id": _short(model), "environment": _short(environment)}


def _short(value: str | None) -> str | None:
    return value[:200] if value else None


def _is_trace_id(key: str) -> bool:
    return len(key) == 32 and all(c in "0123456789abcdef" for c in key)


def _trace_id(value: str) -> str:
    key = value.strip().lower()
    if not _is_trace_id(key):
        raise InvalidRequest("trace_id must be 32 hex digits.", param="trace_id")
    return key
