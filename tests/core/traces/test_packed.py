"""A call's own spans stored as one packed row: they read back exactly, and every read of spans
(a trace, the newest spans, totals, the failed filter) gives what one row per span gave."""

from __future__ import annotations

import random

import orjson
import pytest
from sqlalchemy import func, select

from batchin.core.context import CallContext
from batchin.core.trace_context import continue_trace
from batchin.core.traces.builder import CallFacts
from batchin.core.traces.otlp import STATUS_ERROR, Span
from batchin.core.traces.packed import pack_call, unpack
from batchin.core.traces.service import call_spans
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from batchin.store.tables import trace_call_spans, trace_spans
from tests.conftest import MakeUser
from tests.core.traces.test_traces import TRACEPARENT, _principal, context, finished_stats, record


def spans_of_a_call() -> list[Span]:
    ctx = CallContext(principal=_principal("u1"), request_id="req_1", trace=continue_trace(TRACEPARENT))
    return call_spans(
        ctx,
        endpoint="chat.completions",
        model_id="m",
        route_id="r",
        provider="p",
        timings=finished_stats(),
        environment="production",
        record_id="4a3f2a57-1c1e-4c1b-9a53-1b0f0b7c7a11",
        prompt_tokens=3,
        completion_tokens=2**40,
        cost_units=7,
    )


def otlp_span(trace_id: str, span_id: str, start: int, **fields: object) -> Span:
    values: dict[str, object] = {
        "parent_span_id": None,
        "name": f"step {span_id}",
        "kind": 1,
        "start_unix_nano": start,
        "end_unix_nano": start + 10,
        "source": "otlp",
    }
    values.update(fields)
    return Span(trace_id, span_id, **values)  # type: ignore[arg-type]


def test_a_packed_call_unpacks_to_equal_spans() -> None:
    spans = spans_of_a_call()
    spans[1].events = [{"name": "e", "timeUnixNano": "1", "attributes": []}]
    spans[2].attributes = [*spans[2].attributes, {"key": "ratio", "value": {"doubleValue": 0.1 + 0.2}}]
    row, rest = pack_call("u1", spans)
    assert rest == []
    assert row is not None
    assert row[:3] == ("u1", spans[0].trace_id, spans[0].span_id)
    assert unpack(row[1], row[-1]) == spans


@pytest.mark.parametrize(
    ("status", "admitted", "first_token", "engine_end", "region"),
    [
        ("succeeded", 2_000, 3_000, None, None),
        ("cancelled", 2_000, None, None, "eu"),
        ("EngineFailed", None, None, None, None),
        ("succeeded", 2_000, None, 4_000, "us"),
        ("EncodeFailed", 2_000, 3_000, 9_500, None),
    ],
)
def test_a_call_packed_from_its_facts_is_the_row_its_spans_pack_into(
    status: str, admitted: int | None, first_token: int | None, engine_end: int | None, region: str | None
) -> None:
    trace = continue_trace(TRACEPARENT)
    facts = CallFacts(
        trace, "u1", "req_1", "run_1", "default", region, "chat.completions", "m", "r", "p", status,
        "rec_1", 3, 2**40, 7, 0.25, 1_000, admitted, first_token, 10_000, engine_end,
    )  # fmt: skip
    random.seed(7)  # the same child span ids both ways
    direct = facts.packed("u1", "production")
    random.seed(7)
    row, rest = pack_call("u1", facts.spans("production"))

    assert rest == []
    assert direct == row


def test_a_packed_row_states_its_spans_range_status_and_count() -> None:
    spans = spans_of_a_call()
    spans[3].status_code = STATUS_ERROR
    row, _ = pack_call("u1", spans)
    assert row is not None
    assert row[3:8] == (
        min(s.start_unix_nano for s in spans),
        max(s.end_unix_nano for s in spans),
        max(s.start_unix_nano for s in spans),
        STATUS_ERROR,
        len(spans),
    )


def test_a_span_id_given_twice_is_the_last_span_given() -> None:
    spans = spans_of_a_call()
    later = Span(**{**{f: getattr(spans[1], f) for f in Span.__slots__}, "start_unix_nano": 1})
    row, _ = pack_call("u1", [*spans, later])
    assert row is not None
    assert unpack(row[1], row[-1]) == [spans[0], later, *spans[2:]]
    assert (row[3], row[7]) == (1, len(spans))


def test_spans_of_another_trace_resource_or_source_are_not_packed() -> None:
    spans = spans_of_a_call()
    other_trace = otlp_span("ab" * 16, "00000000000000a1", 5, source="batchin")
    other_resource = otlp_span(spans[0].trace_id, "00000000000000a2", 5, source="batchin")
    sent = otlp_span(spans[0].trace_id, "00000000000000a3", 5)
    row, rest = pack_call("u1", [*spans, other_trace, other_resource, sent])
    assert row is not None
    assert unpack(row[1], row[-1]) == spans
    assert rest == [other_trace, other_resource, sent]


def test_a_long_scope_is_cut_as_a_span_row_cuts_it() -> None:
    [span] = spans_of_a_call()[:1]
    span.scope_name, span.scope_version = "n" * 300, "v" * 300
    row, _ = pack_call("u1", [span])
    assert row is not None
    [back] = unpack(row[1], row[-1])
    assert (back.scope_name, back.scope_version) == ("n" * 200, "v" * 200)


async def stored_rows(services: Services, trace_id: str) -> tuple[int, int]:
    async with services.database.read() as conn:
        packed = await conn.scalar(
            select(func.count()).select_from(trace_call_spans).where(trace_call_spans.c.trace_id == trace_id)
        )
        rows = await conn.scalar(
            select(func.count()).select_from(trace_spans).where(trace_spans.c.trace_id == trace_id)
        )
    return int(packed or 0), int(rows or 0)


async def test_a_call_is_one_row(services: Services, make_user: MakeUser) -> None:
    user = await make_user()
    ctx = await context(services, user)
    record(services, ctx)
    detail = await services.traces.get_trace(user.id, ctx.trace.trace_id)
    assert len(detail.spans) == 5
    assert await stored_rows(services, ctx.trace.trace_id) == (1, 0)


async def send(services: Services, ctx: CallContext, spans: list[Span]) -> None:
    body = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": s.trace_id,
                                "spanId": s.span_id,
                                "name": s.name,
                                "kind": s.kind,
                                "startTimeUnixNano": str(s.start_unix_nano),
                                "endTimeUnixNano": str(s.end_unix_nano),
                                "status": {"code": s.status_code},
                            }
                            for s in spans
                        ]
                    }
                ]
            }
        ]
    }
    rejected, _ = await services.traces.ingest_otlp(
        ctx, orjson.dumps(body), content_type="application/json", content_encoding=None
    )
    assert rejected == 0


async def test_a_span_of_ours_sent_back_over_otlp_stays_one_span(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    ctx = await context(services, user)
    record(services, ctx)
    before = await services.traces.get_trace(user.id, ctx.trace.trace_id)
    ours = before.spans[2]
    echo = otlp_span(ctx.trace.trace_id, ours.span_id, 5)
    await send(services, ctx, [echo, otlp_span(ctx.trace.trace_id, "00000000000000b1", 5)])
    after = await services.traces.get_trace(user.id, ctx.trace.trace_id)
    assert [s.span_id for s in after.spans] == ["00000000000000b1", *(s.span_id for s in before.spans)]
    assert after.spans[3] == ours


async def test_a_span_sent_before_its_call_is_written_stays_one_span(
    services: Services, make_user: MakeUser
) -> None:
    """The call span's id is in the traceparent the caller is answered with, before the call's
    pack leaves the write-behind buffer: an echo of it sent at once is still one span."""
    user = await make_user()
    ctx = await context(services, user)
    record(services, ctx)  # buffered, not yet written
    await send(services, ctx, [otlp_span(ctx.trace.trace_id, ctx.trace.span_id, 5)])
    trace = await services.traces.get_trace(user.id, ctx.trace.trace_id)
    ids = [s.span_id for s in trace.spans]
    assert ids.count(ctx.trace.span_id) == 1
    assert next(s for s in trace.spans if s.span_id == ctx.trace.span_id).name == "batchin.call"


async def calls_and_sent_spans(services: Services, user: UserCreated) -> tuple[CallContext, list[Span]]:
    """Three calls of one trace and spans sent over OTLP whose starts fall among theirs (some at
    the same instant as one of ours), all the user's spans in the order of one table of them."""
    calls = []
    for _ in range(3):
        ctx = await context(services, user, TRACEPARENT)
        record(services, ctx, timings=finished_stats(ttft=0.1 + 0.05 * len(calls)))
        calls.append(ctx)
    ours = (await services.traces.get_trace(user.id, calls[0].trace.trace_id)).spans
    starts = sorted({int(s.start_time_unix_nano) for s in ours})
    sent = [
        otlp_span(calls[0].trace.trace_id, f"{i + 1:016x}", start + offset)
        for i, (start, offset) in enumerate((s, o) for s in starts for o in (-1, 0, 1))
    ]
    await send(services, calls[0], sent)
    return calls[0], sent


async def test_the_newest_spans_are_those_of_both_forms_in_order(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    ctx, sent = await calls_and_sent_spans(services, user)
    everything = await services.traces._store.spans(user.id, trace_id=None, limit=10_000)
    assert len(everything) == 15 + len(sent)
    ordered = sorted(everything, key=lambda s: (-s.start_unix_nano, s.span_id))
    assert everything == ordered[::-1]
    for limit in range(1, len(everything) + 1):
        expected = ordered[:limit][::-1]
        assert await services.traces._store.spans(user.id, trace_id=None, limit=limit) == expected, limit
        one_trace = await services.traces._store.spans(user.id, trace_id=ctx.trace.trace_id, limit=limit)
        assert one_trace == expected, limit


async def test_totals_and_the_failed_filter_count_both_forms(services: Services, make_user: MakeUser) -> None:
    user = await make_user()
    ctx = await context(services, user)
    record(services, ctx)
    [overview] = await services.traces.browse(user.id, limit=10)
    assert (overview.spans, overview.failed) == (5, False)
    assert await services.traces.browse(user.id, limit=10, failed=True) == []
    await send(
        services, ctx, [otlp_span(ctx.trace.trace_id, "00000000000000c1", 1, status_code=STATUS_ERROR)]
    )
    [overview] = await services.traces.browse(user.id, limit=10, failed=True)
    assert (overview.spans, overview.failed) == (6, True)
    failed_call = await context(services, user)
    record(services, failed_call, status="UpstreamError")
    failed = await services.traces.browse(user.id, limit=10, failed=True)
    assert {o.item.trace_id for o in failed} == {ctx.trace.trace_id, failed_call.trace.trace_id}


async def test_a_users_packed_spans_stay_theirs(services: Services, make_user: MakeUser) -> None:
    owner, other = await make_user(), await make_user()
    ctx = await context(services, owner, TRACEPARENT)
    record(services, ctx)
    await services.traces.flush()
    assert await services.traces._store.spans(other.id, trace_id=None, limit=100) == []
    assert await services.traces.call_outcomes(other.id, [ctx.trace.trace_id]) == {}
    assert list(await services.traces.call_outcomes(owner.id, [ctx.trace.trace_id])) == [
        "4a3f2a57-1c1e-4c1b-9a53-1b0f0b7c7a11"
    ]
