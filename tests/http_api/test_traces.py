"""/v1/traces and /v1/otlp/* over HTTP: tenant-scoped views, OTLP in (JSON, protobuf, gzip) and out
(JSON or protobuf by Accept), round-tripping through the official opentelemetry-proto types."""

from __future__ import annotations

import gzip
import time
import uuid
from typing import Any

import httpx2
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from batchin.core.context import CallContext
from batchin.core.serving.generation import GenerationStats
from batchin.core.trace_context import continue_trace
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser, assert_error, bearer

TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
PROTOBUF = "application/x-protobuf"


def otlp_body(trace_id: str = TRACE, count: int = 2, **first: Any) -> dict[str, Any]:
    spans = [
        {
            "traceId": trace_id,
            "spanId": f"{i + 1:016x}",
            "parentSpanId": "" if i == 0 else "0000000000000001",
            "name": f"agent step {i}",
            "kind": 1,
            "startTimeUnixNano": str(1_700_000_000_000_000_000 + i),
            "endTimeUnixNano": str(1_700_000_001_000_000_000),
            "attributes": [{"key": "gen_ai.request.model", "value": {"stringValue": "qwen3.5-27b"}}],
        }
        for i in range(count)
    ]
    spans[0].update(first)
    return {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": spans}]}]}


def proto_body(trace_id: str = TRACE) -> ExportTraceServiceRequest:
    span = Span(
        trace_id=bytes.fromhex(trace_id),
        span_id=bytes.fromhex("1122334455667788"),
        name="rerank",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=1_700_000_000_000_000_000,
        end_time_unix_nano=1_700_000_000_500_000_000,
        attributes=[KeyValue(key="k", value=AnyValue(int_value=7))],
        status=Status(code=Status.STATUS_CODE_OK),
    )
    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="agent"))])
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=[span])])]
    )


async def post_json(
    client: httpx2.AsyncClient, user: UserCreated, body: Any, **headers: str
) -> httpx2.Response:
    return await client.post(
        "/v1/otlp/traces",
        content=orjson.dumps(body),
        headers={**bearer(user.api_key), "Content-Type": "application/json", **headers},
    )


async def record_call(services: Services, user: UserCreated, traceparent: str | None = None) -> CallContext:
    """What the inference path does at the end of a call, through the core API."""
    principal = await services.auth.authenticate(user.api_key)
    ctx = CallContext(
        principal=principal,
        request_id=f"req_{uuid.uuid4().hex}",
        trace=continue_trace(traceparent),
        started_at=time.time() - 0.5,
    )
    now = time.monotonic()
    stats = GenerationStats(prompt_tokens=5, completion_tokens=3, queued_seconds=0.1)
    stats.admitted_at, stats.first_token_at, stats.finished_at = now - 0.3, now - 0.2, now
    services.traces.record_generation(
        ctx,
        endpoint="chat.completions",
        model_id="smollm2-135m-instruct",
        timings=stats,
        status="succeeded",
        record_id="8d7c3a4e-0f65-4c52-9c50-0c1de4d3a111",
    )
    return ctx


# --- /v1/traces ----------------------------------------------------------------------------------------


async def test_traces_need_a_key(client: httpx2.AsyncClient) -> None:
    assert_error(await client.get("/v1/traces"), 401, "unauthorized")
    assert_error(await client.get(f"/v1/traces/{TRACE}"), 401, "unauthorized")
    assert_error(await client.post("/v1/otlp/traces", json={}), 401, "unauthorized")
    assert_error(await client.get("/v1/otlp/export"), 401, "unauthorized")


async def test_a_callers_traceparent_shows_up_in_the_trace_list(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    ctx = await record_call(services, user, f"00-{TRACE}-{CALLER_SPAN}-01")
    response = await client.get("/v1/traces?limit=20", headers=bearer(user.api_key))
    assert response.status_code == 200, response.text
    [item] = response.json()["items"]
    assert {k: v for k, v in item.items() if k != "created_at"} == {
        "trace_id": TRACE,
        "run_id": ctx.run_id,
        "record_id": "8d7c3a4e-0f65-4c52-9c50-0c1de4d3a111",
        "route_id": "default-route",
        "provider": "batchin-managed",
        "environment": "development",
        "prompt_version_id": "default",
        "model_id": "smollm2-135m-instruct",
        "source": "batchin",
    }
    assert item["created_at"].endswith("Z")


async def test_one_trace_has_its_spans(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    ctx = await record_call(services, user, f"00-{TRACE}-{CALLER_SPAN}-01")
    response = await client.get(f"/v1/traces/{TRACE}", headers=bearer(user.api_key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["run_id"] == ctx.run_id
    root = body["spans"][0]
    assert (root["name"], root["span_id"], root["parent_span_id"]) == (
        "batchin.call",
        ctx.trace.span_id,
        CALLER_SPAN,
    )
    assert root["attributes"]["batchin.record_id"] == "8d7c3a4e-0f65-4c52-9c50-0c1de4d3a111"
    assert [s["name"] for s in body["spans"]] == [
        "batchin.call",
        "batchin.admission",
        "batchin.engine",
        "batchin.first_token",
        "batchin.completion",
    ]


@pytest.mark.parametrize("limit", ["0", "101", "-5", "ten", "1.5"])
async def test_limit_outside_1_to_100_is_a_400(
    client: httpx2.AsyncClient, make_user: MakeUser, limit: str
) -> None:
    user = await make_user()
    response = await client.get(f"/v1/traces?limit={limit}", headers=bearer(user.api_key))
    assert assert_error(response, 400, "invalid_request")["param"] == "limit"


@pytest.mark.parametrize("limit", ["1", "100"])
async def test_limit_bounds_are_accepted(client: httpx2.AsyncClient, make_user: MakeUser, limit: str) -> None:
    user = await make_user()
    response = await client.get(f"/v1/traces?limit={limit}", headers=bearer(user.api_key))
    assert response.status_code == 200
    assert response.json() == {"items": []}


async def test_traces_list_newest_first(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    first = await record_call(services, user)
    await services.traces.flush()
    second = await record_call(services, user)
    response = await client.get("/v1/traces", headers=bearer(user.api_key))
    assert [i["trace_id"] for i in response.json()["items"]] == [second.trace.trace_id, first.trace.trace_id]


async def test_another_users_trace_is_a_404(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    owner, other = await make_user(), await make_user()
    await record_call(services, owner, f"00-{TRACE}-{CALLER_SPAN}-01")
    assert_error(await client.get(f"/v1/traces/{TRACE}", headers=bearer(other.api_key)), 404, "not_found")
    assert (await client.get("/v1/traces", headers=bearer(other.api_key))).json() == {"items": []}
    export = await client.get(f"/v1/otlp/export?trace_id={TRACE}", headers=bearer(other.api_key))
    assert export.json() == {"resourceSpans": []}


@pytest.mark.parametrize("trace_id", ["nope", "0" * 33, "%00" * 4])
async def test_unknown_trace_ids_are_a_404(
    client: httpx2.AsyncClient, make_user: MakeUser, trace_id: str
) -> None:
    user = await make_user()
    assert_error(await client.get(f"/v1/traces/{trace_id}", headers=bearer(user.api_key)), 404, "not_found")


# --- POST /v1/otlp/traces ------------------------------------------------------------------------------


async def test_otlp_json_merges_into_the_trace_view(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    response = await post_json(client, user, otlp_body())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {}
    [item] = (await client.get("/v1/traces", headers=bearer(user.api_key))).json()["items"]
    assert (item["trace_id"], item["source"], item["model_id"], item["run_id"]) == (
        TRACE,
        "otlp",
        "qwen3.5-27b",
        None,
    )
    spans = (await client.get(f"/v1/traces/{TRACE}", headers=bearer(user.api_key))).json()["spans"]
    assert [(s["name"], s["parent_span_id"], s["source"]) for s in spans] == [
        ("agent step 0", None, "otlp"),
        ("agent step 1", "0000000000000001", "otlp"),
    ]


async def test_the_seed_example_gets_an_empty_response(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    response = await post_json(client, user, {"resourceSpans": []})
    assert (response.status_code, response.json()) == (200, {})


async def test_otlp_protobuf_gets_a_protobuf_response(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    response = await client.post(
        "/v1/otlp/traces",
        content=proto_body().SerializeToString(),
        headers={**bearer(user.api_key), "Content-Type": PROTOBUF},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == PROTOBUF
    parsed = ExportTraceServiceResponse()
    parsed.ParseFromString(response.content)
    assert not parsed.HasField("partial_success")
    [span] = (await client.get(f"/v1/traces/{TRACE}", headers=bearer(user.api_key))).json()["spans"]
    assert (span["name"], span["kind"], span["status"], span["attributes"], span["resource"]) == (
        "rerank",
        "client",
        {"code": "ok", "message": ""},
        {"k": 7},
        {"service.name": "agent"},
    )


@pytest.mark.parametrize("content_type", ["application/json", PROTOBUF])
async def test_gzip_bodies_are_accepted(
    client: httpx2.AsyncClient, make_user: MakeUser, content_type: str
) -> None:
    user = await make_user()
    raw = (
        orjson.dumps(otlp_body()) if content_type == "application/json" else proto_body().SerializeToString()
    )
    response = await client.post(
        "/v1/otlp/traces",
        content=gzip.compress(raw),
        headers={**bearer(user.api_key), "Content-Type": content_type, "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    assert (await client.get(f"/v1/traces/{TRACE}", headers=bearer(user.api_key))).status_code == 200


async def test_malformed_spans_are_a_partial_success(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    response = await post_json(client, user, otlp_body(spanId="not-hex"))
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert "hex" in partial["errorMessage"]
    spans = (await client.get(f"/v1/traces/{TRACE}", headers=bearer(user.api_key))).json()["spans"]
    assert [s["name"] for s in spans] == ["agent step 1"]


async def test_resending_a_batch_stores_nothing_twice(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    for _ in range(2):
        assert (await post_json(client, user, otlp_body())).status_code == 200
    spans = (await client.get(f"/v1/traces/{TRACE}", headers=bearer(user.api_key))).json()["spans"]
    assert len(spans) == 2


async def test_same_trace_id_from_two_users_stays_apart(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    alice, bob = await make_user(), await make_user()
    await post_json(client, alice, otlp_body(count=2))
    await post_json(client, bob, otlp_body(count=1, name="bob's step"))
    alice_spans = (await client.get(f"/v1/traces/{TRACE}", headers=bearer(alice.api_key))).json()["spans"]
    bob_spans = (await client.get(f"/v1/traces/{TRACE}", headers=bearer(bob.api_key))).json()["spans"]
    assert [s["name"] for s in alice_spans] == ["agent step 0", "agent step 1"]
    assert [s["name"] for s in bob_spans] == ["bob's step"]


@pytest.mark.parametrize(
    ("content", "headers", "param"),
    [
        (b"{nope", {"Content-Type": "application/json"}, None),
        (b"[]", {"Content-Type": "application/json"}, None),
        (b"\xff\xfe", {"Content-Type": PROTOBUF}, None),
        (b"{}", {"Content-Type": "text/plain"}, "Content-Type"),
        (b"{}", {}, "Content-Type"),
        (b"{}", {"Content-Type": "application/json", "Content-Encoding": "gzip"}, "Content-Encoding"),
        (b"{}", {"Content-Type": "application/json", "Content-Encoding": "zstd"}, "Content-Encoding"),
    ],
)
async def test_malformed_bodies_are_a_400(
    client: httpx2.AsyncClient,
    make_user: MakeUser,
    content: bytes,
    headers: dict[str, str],
    param: str | None,
) -> None:
    user = await make_user()
    response = await client.post(
        "/v1/otlp/traces", content=content, headers={**bearer(user.api_key), **headers}
    )
    assert assert_error(response, 400, "invalid_request")["param"] == param


async def test_bodies_over_the_limit_are_a_413(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    services.traces.otlp_max_bytes = 4096
    big = otlp_body(count=60)
    assert len(orjson.dumps(big)) > 4096
    assert_error(await post_json(client, user, big), 413, "payload_too_large")
    bomb = gzip.compress(b" " * 100_000)
    assert len(bomb) < 4096
    response = await client.post(
        "/v1/otlp/traces",
        content=bomb,
        headers={**bearer(user.api_key), "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert_error(response, 413, "payload_too_large")


# --- GET /v1/otlp/export -------------------------------------------------------------------------------


async def test_export_is_otlp_json_by_default(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    body = otlp_body()
    await post_json(client, user, body)
    response = await client.get("/v1/otlp/export", headers=bearer(user.api_key))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    exported = response.json()
    spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    del spans[0]["parentSpanId"]  # empty: omitted
    for span in spans:
        span["status"] = {}
    assert exported == {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}


async def test_protobuf_in_protobuf_out_round_trips(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    sent = proto_body()
    await client.post(
        "/v1/otlp/traces",
        content=sent.SerializeToString(),
        headers={**bearer(user.api_key), "Content-Type": PROTOBUF},
    )
    response = await client.get("/v1/otlp/export", headers={**bearer(user.api_key), "Accept": PROTOBUF})
    assert response.headers["content-type"] == PROTOBUF
    received = ExportTraceServiceRequest()
    received.ParseFromString(response.content)
    assert received == sent


async def test_our_own_spans_export_through_the_official_types(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    ctx = await record_call(services, user, f"00-{TRACE}-{CALLER_SPAN}-01")
    detail = (await client.get(f"/v1/traces/{TRACE}", headers=bearer(user.api_key))).json()
    response = await client.get(
        f"/v1/otlp/export?trace_id={TRACE}", headers={**bearer(user.api_key), "Accept": PROTOBUF}
    )
    received = ExportTraceServiceRequest()
    received.ParseFromString(response.content)
    [resource] = received.resource_spans
    [scope] = resource.scope_spans
    assert scope.scope.name == "batchin"
    by_id = {s.span_id.hex(): s for s in scope.spans}
    assert set(by_id) == {s["span_id"] for s in detail["spans"]}
    for span in detail["spans"]:
        proto = by_id[span["span_id"]]
        assert proto.trace_id.hex() == TRACE
        assert proto.name == span["name"]
        assert (proto.parent_span_id.hex() or None) == span["parent_span_id"]
        assert str(proto.start_time_unix_nano) == span["start_time_unix_nano"]
        assert str(proto.end_time_unix_nano) == span["end_time_unix_nano"]
        attributes = {kv.key: kv.value for kv in proto.attributes}
        assert attributes["batchin.model_id"].string_value == "smollm2-135m-instruct"
        assert attributes["batchin.prompt_version_id"].string_value == ctx.prompt_version
    assert by_id[ctx.trace.span_id].kind == Span.SPAN_KIND_SERVER


async def test_export_filters_by_trace_and_limit(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    other = "1" * 32
    await post_json(client, user, otlp_body(TRACE, count=2))
    await post_json(client, user, otlp_body(other, count=3))

    async def exported(query: str) -> list[str]:
        response = await client.get(f"/v1/otlp/export{query}", headers=bearer(user.api_key))
        assert response.status_code == 200, response.text
        return [
            s["traceId"] + "/" + s["spanId"]
            for rs in response.json()["resourceSpans"]
            for ss in rs["scopeSpans"]
            for s in ss["spans"]
        ]

    assert [s.split("/")[0] for s in await exported(f"?trace_id={other}")] == [other] * 3
    assert len(await exported("")) == 5
    assert len(await exported("?limit=2")) == 2


@pytest.mark.parametrize(
    ("query", "param"), [("?trace_id=xyz", "trace_id"), ("?limit=0", "limit"), ("?limit=10001", "limit")]
)
async def test_export_parameters_are_validated(
    client: httpx2.AsyncClient, make_user: MakeUser, query: str, param: str
) -> None:
    user = await make_user()
    response = await client.get(f"/v1/otlp/export{query}", headers=bearer(user.api_key))
    assert assert_error(response, 400, "invalid_request")["param"] == param


@pytest.mark.parametrize(
    ("accept", "protobuf"),
    [
        (None, False),
        ("*/*", False),
        ("application/json", False),
        (PROTOBUF, True),
        ("application/protobuf", True),
        (f"application/json;q=0.5, {PROTOBUF}", True),
        (f"{PROTOBUF};q=0.2, application/json", False),
    ],
)
async def test_export_format_follows_accept(
    client: httpx2.AsyncClient, make_user: MakeUser, accept: str | None, protobuf: bool
) -> None:
    user = await make_user()
    headers = bearer(user.api_key) | ({"Accept": accept} if accept else {})
    response = await client.get("/v1/otlp/export", headers=headers)
    assert response.headers["content-type"] == (PROTOBUF if protobuf else "application/json")
