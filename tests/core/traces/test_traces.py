"""The trace service through its core API, as the inference path uses it: a CallContext that
continues the caller's traceparent, the call's timings, then the tenant's trace view."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import orjson
import pytest

from batchin.core.billing.money import UNITS_PER_CENT
from batchin.core.context import CallContext, Principal
from batchin.core.serving.generation import GenerationStats
from batchin.core.trace_context import continue_trace
from batchin.core.traces.service import TraceService, call_spans
from batchin.errors import InvalidRequest, NotFound
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


async def context(services: Services, user: UserCreated, traceparent: str | None = None) -> CallContext:
    principal = await services.auth.authenticate(user.api_key)
    return CallContext(
        principal=principal,
        request_id=f"req_{uuid.uuid4().hex}",
        trace=continue_trace(traceparent),
        prompt_version="support@v2",
        started_at=time.time() - 1.0,  # the call began a second ago; finished_stats() ends it now
    )


def finished_stats(*, queued: float = 0.05, ttft: float = 0.2, decode: float = 0.5) -> GenerationStats:
    """Timings as the inference path leaves them after a call that just ended."""
    now = time.monotonic()
    stats = GenerationStats(prompt_tokens=12, completion_tokens=7, queued_seconds=queued)
    stats.finished_at = now
    stats.first_token_at = now - decode
    stats.admitted_at = now - decode - ttft
    stats.finish_reason = "stop"
    return stats


def record(services: Services, ctx: CallContext, **overrides: object) -> None:
    fields: dict[str, object] = {
        "endpoint": "chat.completions",
        "model_id": "smollm2-135m-instruct",
        "timings": finished_stats(),
        "status": "succeeded",
        "record_id": "4a3f2a57-1c1e-4c1b-9a53-1b0f0b7c7a11",
        "prompt_tokens": 12,
        "completion_tokens": 7,
        "cost_units": 3 * UNITS_PER_CENT // 2,
    }
    fields.update(overrides)
    services.traces.record_generation(ctx, **fields)  # type: ignore[arg-type]


# --- the call's spans ----------------------------------------------------------------------------------


async def test_a_call_continues_the_callers_traceparent(services: Services, make_user: MakeUser) -> None:
    user = await make_user()
    ctx = await context(services, user, TRACEPARENT)
    record(services, ctx)
    listed = await services.traces.list_traces(user.id, limit=20)
    [item] = listed.items
    assert item.model_dump(exclude={"created_at"}) == {
        "trace_id": CALLER_TRACE,
        "run_id": ctx.run_id,
        "record_id": "4a3f2a57-1c1e-4c1b-9a53-1b0f0b7c7a11",
        "route_id": "default-route",
        "provider": "batchin-managed",
        "environment": "development",
        "prompt_version_id": "support@v2",
        "model_id": "smollm2-135m-instruct",
        "source": "batchin",
    }


async def test_the_call_span_is_our_traceparent_span_under_the_callers(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    ctx = await context(services, user, TRACEPARENT)
    record(services, ctx)
    detail = await services.traces.get_trace(user.id, CALLER_TRACE)
    spans = {s.name: s for s in detail.spans}
    assert list(spans) == [
        "batchin.call",
        "batchin.admission",
        "batchin.engine",
        "batchin.first_token",
        "batchin.completion",
    ]
    root = spans["batchin.call"]
    assert (root.span_id, root.parent_span_id, root.kind) == (ctx.trace.span_id, CALLER_SPAN, "server")
    assert ctx.response_headers()["traceparent"] == f"00-{CALLER_TRACE}-{root.span_id}-01"
    assert spans["batchin.admission"].parent_span_id == root.span_id
    assert spans["batchin.engine"].parent_span_id == root.span_id
    assert spans["batchin.first_token"].parent_span_id == spans["batchin.engine"].span_id
    assert spans["batchin.completion"].parent_span_id == spans["batchin.engine"].span_id
    assert {s.status.code for s in detail.spans} == {"ok", "unset"}
    assert root.status.code == "ok"


async def test_every_span_carries_the_call_facts(services: Services, make_user: MakeUser) -> None:
    user = await make_user()
    ctx = await context(services, user)
    record(services, ctx, route_id="eu-route", provider="upstream-a")
    detail = await services.traces.get_trace(user.id, ctx.trace.trace_id)
    for span in detail.spans:
        assert {
            key: span.attributes[key]
            for key in (
                "batchin.model_id",
                "batchin.route_id",
                "batchin.provider",
                "batchin.prompt_version_id",
                "batchin.record_id",
                "batchin.cost_micro_cents",
                "batchin.cost_cents",
            )
        } == {
            "batchin.model_id": "smollm2-135m-instruct",
            "batchin.route_id": "eu-route",
            "batchin.provider": "upstream-a",
            "batchin.prompt_version_id": "support@v2",
            "batchin.record_id": "4a3f2a57-1c1e-4c1b-9a53-1b0f0b7c7a11",
            "batchin.cost_micro_cents": 1_500_000,
            "batchin.cost_cents": 1.5,
        }, span.name
        assert span.resource == {
            "service.name": "batchin",
            "service.version": "0.1.0",
            "deployment.environment.name": "development",
        }
    root = detail.spans[0]
    assert root.attributes["batchin.run_id"] == ctx.run_id
    assert root.attributes["batchin.request_id"] == ctx.request_id
    assert root.attributes["gen_ai.usage.input_tokens"] == 12
    assert root.attributes["gen_ai.usage.output_tokens"] == 7


async def test_span_times_follow_the_timings(services: Services, make_user: MakeUser) -> None:
    user = await make_user()
    ctx = await context(services, user)
    record(services, ctx, timings=finished_stats(queued=0.05, ttft=0.2, decode=0.5))
    spans = {s.name: s for s in (await services.traces.get_trace(user.id, ctx.trace.trace_id)).spans}
    assert spans["batchin.first_token"].duration_ms == pytest.approx(200, abs=1)
    assert spans["batchin.completion"].duration_ms == pytest.approx(500, abs=1)
    assert spans["batchin.engine"].duration_ms == pytest.approx(700, abs=1)
    assert spans["batchin.first_token"].attributes["batchin.ttft_seconds"] == pytest.approx(0.2)
    assert spans["batchin.admission"].attributes["batchin.queue_seconds"] == 0.05
    assert spans["batchin.engine"].start_time_unix_nano == spans["batchin.admission"].end_time_unix_nano
    assert spans["batchin.completion"].end_time_unix_nano == spans["batchin.call"].end_time_unix_nano


async def test_a_refused_call_has_only_call_and_admission_spans(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    ctx = await context(services, user)
    refused = GenerationStats(prompt_tokens=12)
    record(services, ctx, timings=refused, status="RateLimited", cost_units=0, completion_tokens=0)
    detail = await services.traces.get_trace(user.id, ctx.trace.trace_id)
    assert [(s.name, s.status.code, s.status.message) for s in detail.spans] == [
        ("batchin.call", "error", "RateLimited"),
        ("batchin.admission", "error", "RateLimited"),
    ]
    assert detail.spans[1].attributes["batchin.admitted"] is False


async def test_a_cancelled_call_is_not_an_error(services: Services, make_user: MakeUser) -> None:
    user = await make_user()
    ctx = await context(services, user)
    record(services, ctx, status="cancelled")
    root = (await services.traces.get_trace(user.id, ctx.trace.trace_id)).spans[0]
    assert (root.status.code, root.attributes["batchin.status"]) == ("unset", "cancelled")


def test_call_spans_builds_without_a_store() -> None:
    ctx = CallContext(
        principal=_principal("u1"), request_id="req_1", trace=continue_trace(TRACEPARENT), region="eu"
    )
    spans = call_spans(
        ctx,
        endpoint="images.generations",
        model_id="tiny-sd",
        route_id="default-route",
        provider="batchin-managed",
        timings=_NoTokens(
            queued_seconds=0.0, admitted_at=time.monotonic() - 1, first_token_at=None, finished_at=None
        ),
        environment="production",
    )
    assert [s.name for s in spans] == ["batchin.call", "batchin.admission", "batchin.engine"]
    assert all(s.trace_id == CALLER_TRACE for s in spans)
    assert {kv["key"]: kv["value"] for kv in spans[0].resource_attributes}["batchin.region"] == {
        "stringValue": "eu"
    }


@dataclass
class _NoTokens:
    queued_seconds: float
    admitted_at: float
    first_token_at: float | None
    finished_at: float | None


def _principal(user_id: str) -> Principal:
    return Principal(
        user_id=user_id, key_id="k", key_prefix="p", rate_limit_rpm=60, monthly_budget_cents=None
    )


# --- the trace view ------------------------------------------------------------------------------------


async def test_traces_list_newest_first_and_honour_limit(services: Services, make_user: MakeUser) -> None:
    user = await make_user()
    ids = []
    for _ in range(3):
        ctx = await context(services, user)
        record(services, ctx)
        await services.traces.flush()  # distinct created_at order
        ids.append(ctx.trace.trace_id)
    assert [i.trace_id for i in (await services.traces.list_traces(user.id, limit=20)).items] == ids[::-1]
    assert [i.trace_id for i in (await services.traces.list_traces(user.id, limit=2)).items] == ids[:0:-1]


@pytest.mark.parametrize("limit", [0, 101, -1])
async def test_list_limit_is_1_to_100(services: Services, limit: int) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await services.traces.list_traces("anyone", limit=limit)
    assert caught.value.param == "limit"


async def test_another_users_trace_is_not_found(services: Services, make_user: MakeUser) -> None:
    owner, other = await make_user(), await make_user()
    ctx = await context(services, owner, TRACEPARENT)
    record(services, ctx)
    with pytest.raises(NotFound):
        await services.traces.get_trace(other.id, CALLER_TRACE)
    assert (await services.traces.list_traces(other.id, limit=100)).items == []
    assert (await services.traces.get_trace(owner.id, CALLER_TRACE.upper())).trace_id == CALLER_TRACE


async def test_two_calls_in_one_trace_share_one_summary(services: Services, make_user: MakeUser) -> None:
    user = await make_user()
    first = await context(services, user, TRACEPARENT)
    second = await context(services, user, TRACEPARENT)
    record(services, first)
    record(services, second, model_id="other-model")
    [item] = (await services.traces.list_traces(user.id, limit=10)).items
    assert (item.run_id, item.model_id) == (first.run_id, "smollm2-135m-instruct")
    detail = await services.traces.get_trace(user.id, CALLER_TRACE)
    assert [s.span_id for s in detail.spans if s.name == "batchin.call"] == [
        first.trace.span_id,
        second.trace.span_id,
    ]


# --- write-behind buffer -------------------------------------------------------------------------------


async def test_recording_does_not_write_until_the_writer_runs(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    traces = TraceService(services.database, environment="test", flush_interval=0.05)
    try:
        ctx = await context(services, user)
        traces.record_generation(
            ctx, endpoint="x", model_id="m", timings=finished_stats(), status="succeeded"
        )
        assert traces.stats()["pending_calls"] == 1
        for _ in range(200):
            if traces.stats()["written_calls"] == 1:
                break
            await asyncio.sleep(0.01)
        assert traces.stats() == {
            "pending_calls": 0,
            "written_calls": 1,
            "dropped_calls": 0,
            "failed_calls": 0,
        }
    finally:
        await traces.close()


async def test_a_full_buffer_drops_the_oldest_calls(services: Services, make_user: MakeUser) -> None:
    user = await make_user()
    traces = TraceService(services.database, environment="test", buffer_calls=3, flush_interval=60)
    contexts = [await context(services, user) for _ in range(5)]
    for ctx in contexts:
        traces.record_generation(
            ctx, endpoint="x", model_id="m", timings=finished_stats(), status="succeeded"
        )
    assert traces.stats()["dropped_calls"] == 2
    await traces.close()  # writes what is left, without waiting out the interval
    stored = {i.trace_id for i in (await services.traces.list_traces(user.id, limit=10)).items}
    assert stored == {ctx.trace.trace_id for ctx in contexts[2:]}
    assert traces.stats()["written_calls"] == 3


async def test_a_batch_the_store_refuses_is_counted_not_raised(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    ctx = await context(services, user)
    ctx.principal = _principal(str(uuid.uuid4()))  # no such user: the foreign key refuses the rows
    traces = TraceService(services.database, environment="test", flush_interval=60)
    traces.record_generation(ctx, endpoint="x", model_id="m", timings=finished_stats(), status="succeeded")
    await traces.close()
    assert traces.stats()["failed_calls"] == 1


async def test_on_the_ledgers_writer_a_refused_batch_leaves_other_writes_whole(
    services: Services, make_user: MakeUser
) -> None:
    """SQLite: trace rows join the ledger's group commits; a batch the store refuses (no such
    user) is rolled back alone, the ledger writes and traces queued beside it commit."""
    writer = services.ledger.sqlite_writer
    if writer is None:
        pytest.skip("the group-commit writer is SQLite's")
    user = await make_user()
    good, bad = await context(services, user), await context(services, user)
    bad.principal = _principal(str(uuid.uuid4()))
    refused = TraceService(services.database, environment="test", flush_interval=60, writer=writer)
    kept = TraceService(services.database, environment="test", flush_interval=60, writer=writer)
    refused.record_generation(bad, endpoint="x", model_id="m", timings=finished_stats(), status="succeeded")
    kept.record_generation(good, endpoint="x", model_id="m", timings=finished_stats(), status="succeeded")
    reservation = await services.ledger.reserve(good.principal, 5)
    await asyncio.gather(refused.close(), kept.close(), services.ledger.release(reservation))
    assert refused.stats()["failed_calls"] == 1
    assert kept.stats()["written_calls"] == 1
    listed = (await services.traces.list_traces(user.id, limit=10)).items
    assert [item.trace_id for item in listed] == [good.trace.trace_id]
    detail = await services.traces.get_trace(user.id, good.trace.trace_id)
    assert {span.name for span in detail.spans} >= {"batchin.call"}
    assert services.ledger.live_reservations == 0


async def test_recording_leaves_every_write_to_the_write_behind(
    services: Services, make_user: MakeUser
) -> None:
    """What keeps recording cheap on the hot path: the call only buffers its facts; nothing is
    built or written until the write-behind runs (bench/bench_traces.py has the cost in µs)."""
    user = await make_user()
    traces = TraceService(services.database, environment="test", buffer_calls=100_000, flush_interval=60)
    ctx = await context(services, user)
    stats = finished_stats()
    count = 500
    for _ in range(count):
        ctx.trace = continue_trace(None)
        traces.record_generation(ctx, endpoint="x", model_id="m", timings=stats, status="succeeded")

    assert traces.stats()["pending_calls"] == count
    assert traces.stats()["written_calls"] == 0
    # Read through another service: its reads flush its own buffer, not this one's.
    assert (await services.traces.list_traces(user.id, limit=10)).items == []
    await traces.close()
    assert traces.stats()["written_calls"] == count
    assert len((await services.traces.list_traces(user.id, limit=100)).items) == 100


# --- OTLP merged into the view -------------------------------------------------------------------------


async def test_otlp_spans_merge_into_our_trace(services: Services, make_user: MakeUser) -> None:
    user = await make_user()
    ctx = await context(services, user, TRACEPARENT)
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "deployment.environment.name", "value": {"stringValue": "staging"}}
                    ]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": CALLER_TRACE,
                                "spanId": CALLER_SPAN,
                                "name": "agent step",
                                "kind": 3,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000001000000000",
                            }
                        ]
                    }
                ],
            }
        ]
    }
    rejected, _ = await services.traces.ingest_otlp(
        ctx, orjson.dumps(body), content_type="application/json", content_encoding=None
    )
    assert rejected == 0
    [item] = (await services.traces.list_traces(user.id, limit=5)).items
    assert (item.source, item.environment, item.run_id) == ("otlp", "staging", None)
    record(services, ctx)
    [item] = (await services.traces.list_traces(user.id, limit=5)).items
    assert (item.source, item.environment, item.run_id) == ("otlp", "staging", ctx.run_id)
    detail = await services.traces.get_trace(user.id, CALLER_TRACE)
    assert [s.name for s in detail.spans][:2] == ["agent step", "batchin.call"]
    assert detail.spans[1].parent_span_id == detail.spans[0].span_id
