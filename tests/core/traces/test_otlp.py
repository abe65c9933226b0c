"""OTLP conversion: JSON and protobuf bodies → spans → OTLP again, checked against the official
`opentelemetry-proto` types (never our own encoder alone)."""

from __future__ import annotations

import base64
import gzip
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from batchin.core.traces.otlp import any_value, decode_request, plain_attributes
from batchin.core.traces.otlp_encode import encode_json, encode_protobuf, export_response, to_message
from batchin.errors import InvalidRequest, PayloadTooLarge

TRACE = "5b8efff798038103d269b633813fc60c"
ROOT = "eee19b7ec3c1b174"
CHILD = "eee19b7ec3c1b173"
LIMIT = 1 << 20


def otlp_json(*spans: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "agent"}}]},
                "scopeSpans": [{"scope": {"name": "my.lib", "version": "1.2"}, "spans": list(spans)}],
            }
        ]
    }


def span_json(
    span_id: str = ROOT, *, trace_id: str = TRACE, parent: str = "", **extra: Any
) -> dict[str, Any]:
    span = {
        "traceId": trace_id,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": "tool call",
        "kind": 3,
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "attributes": [
            {"key": "gen_ai.request.model", "value": {"stringValue": "qwen3.5-27b"}},
            {"key": "retries", "value": {"intValue": "3"}},
            {"key": "ok", "value": {"boolValue": True}},
            {"key": "ratio", "value": {"doubleValue": 0.5}},
        ],
        "events": [{"timeUnixNano": "1544712660500000000", "name": "first token"}],
        "status": {"code": 1},
    }
    span.update(extra)
    return span


def decode_json(body: Any, **kwargs: Any) -> Any:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return decode_request(
        raw, content_type="application/json", content_encoding=None, max_bytes=LIMIT, **kwargs
    )


def proto_request() -> ExportTraceServiceRequest:
    span = Span(
        trace_id=bytes.fromhex(TRACE),
        span_id=bytes.fromhex(CHILD),
        parent_span_id=bytes.fromhex(ROOT),
        name="retrieve",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=1_700_000_000_000_000_000,
        end_time_unix_nano=1_700_000_000_250_000_000,
        attributes=[KeyValue(key="db.system", value=AnyValue(string_value="postgresql"))],
        status=Status(code=Status.STATUS_CODE_ERROR, message="timeout"),
    )
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])])


# --- decoding ----------------------------------------------------------------------------------------


def test_json_span_fields_decode_from_hex_ids_and_string_int64() -> None:
    decoded = decode_json(otlp_json(span_json(CHILD, parent=ROOT)))
    assert decoded.rejected == 0
    [span] = decoded.spans
    assert (span.trace_id, span.span_id, span.parent_span_id) == (TRACE, CHILD, ROOT)
    assert (span.name, span.kind, span.status_code) == ("tool call", 3, 1)
    assert (span.start_unix_nano, span.end_unix_nano) == (1544712660000000000, 1544712661000000000)
    assert plain_attributes(span.attributes) == {
        "gen_ai.request.model": "qwen3.5-27b",
        "retries": 3,
        "ok": True,
        "ratio": 0.5,
    }
    assert plain_attributes(span.resource_attributes) == {"service.name": "agent"}
    assert (span.scope_name, span.scope_version, span.source) == ("my.lib", "1.2", "otlp")
    assert span.events == [{"timeUnixNano": "1544712660500000000", "name": "first token"}]


def test_empty_parent_means_root_span() -> None:
    [span] = decode_json(otlp_json(span_json())).spans
    assert span.parent_span_id is None


def test_snake_case_keys_are_accepted_too() -> None:
    body = {
        "resource_spans": [
            {"scope_spans": [{"spans": [{"trace_id": TRACE, "span_id": ROOT, "name": "x", "kind": 1}]}]}
        ]
    }
    [span] = decode_json(body).spans
    assert (span.trace_id, span.span_id, span.kind) == (TRACE, ROOT, 1)


def test_the_seed_example_body_is_an_empty_export() -> None:
    decoded = decode_json({"resourceSpans": []})
    assert (decoded.spans, decoded.rejected) == ([], 0)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"traceId": "zz" * 16}, "hex"),
        ({"spanId": "abc"}, "hex"),
        ({"traceId": "ab" * 8}, "trace_id must be 16 bytes"),
        ({"traceId": "00" * 16}, "trace_id must be 16 bytes, not all zero"),
        ({"spanId": "00" * 8}, "span_id must be 8 bytes"),
        ({"parentSpanId": "ab" * 4}, "parent_span_id"),
        ({"startTimeUnixNano": str(2**63)}, "int64"),
        ({"links": [{"traceId": TRACE, "spanId": "12"}]}, "link ids"),
    ],
)
def test_malformed_spans_are_rejected_one_by_one(bad: dict[str, Any], reason: str) -> None:
    good = span_json(ROOT)
    decoded = decode_json(otlp_json(good, {**span_json(CHILD), **bad}))
    assert [s.span_id for s in decoded.spans] == [ROOT]
    assert decoded.rejected == 1
    assert decoded.error_message.startswith("1 span(s) rejected: ")
    assert reason in decoded.error_message


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        orjson.dumps({"resourceSpans": "nope"}),
        orjson.dumps(
            {
                "resourceSpans": [
                    {
                        "scopeSpans": [
                            {"spans": [{"traceId": TRACE, "spanId": ROOT, "startTimeUnixNano": "soon"}]}
                        ]
                    }
                ]
            }
        ),
    ],
)
def test_a_body_that_is_not_otlp_json_is_a_400(body: bytes) -> None:
    with pytest.raises(InvalidRequest):
        decode_json(body)


def test_protobuf_decodes_like_the_equivalent_json() -> None:
    message = proto_request()
    from_proto = decode_request(
        message.SerializeToString(),
        content_type="application/x-protobuf",
        content_encoding=None,
        max_bytes=LIMIT,
    ).spans
    as_json = json_format.MessageToDict(message, use_integers_for_enums=True)
    span = as_json["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    for key in ("traceId", "spanId", "parentSpanId"):
        span[key] = base64.b64decode(span[key]).hex()  # OTLP JSON writes ids as hex
    assert decode_json(as_json).spans == from_proto
    [decoded] = from_proto
    assert (decoded.kind, decoded.status_code, decoded.status_message) == (3, 2, "timeout")


def test_protobuf_garbage_is_a_400() -> None:
    with pytest.raises(InvalidRequest):
        decode_request(
            b"\xff\xff\xff", content_type="application/x-protobuf", content_encoding=None, max_bytes=LIMIT
        )


def test_unknown_content_type_is_a_400_naming_the_header() -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_request(b"{}", content_type="text/plain", content_encoding=None, max_bytes=LIMIT)
    assert caught.value.param == "Content-Type"


def test_content_type_parameters_are_ignored() -> None:
    body = orjson.dumps(otlp_json(span_json()))
    decoded = decode_request(
        body, content_type="application/json; charset=utf-8", content_encoding=None, max_bytes=LIMIT
    )
    assert len(decoded.spans) == 1


# --- gzip ----------------------------------------------------------------------------------------------


def test_gzip_bodies_decode() -> None:
    body = gzip.compress(proto_request().SerializeToString())
    decoded = decode_request(
        body, content_type="application/x-protobuf", content_encoding="gzip", max_bytes=LIMIT
    )
    assert [s.name for s in decoded.spans] == ["retrieve"]


def test_concatenated_gzip_members_decode() -> None:
    raw = orjson.dumps(otlp_json(span_json()))
    body = gzip.compress(raw[:10]) + gzip.compress(raw[10:])
    decoded = decode_request(body, content_type="application/json", content_encoding="GZIP", max_bytes=LIMIT)
    assert len(decoded.spans) == 1


def test_a_gzip_bomb_stops_at_the_limit() -> None:
    body = gzip.compress(b" " * (LIMIT * 8))
    assert len(body) < LIMIT // 100
    with pytest.raises(PayloadTooLarge):
        decode_request(body, content_type="application/json", content_encoding="gzip", max_bytes=LIMIT)


# mtime=0: the same bytes (and test id) in every collection, as parallel test workers require.
@pytest.mark.parametrize("body", [b"not gzip at all", gzip.compress(b'{"resourceSpans": []}', mtime=0)[:-12]])
def test_invalid_or_truncated_gzip_is_a_400(body: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_request(body, content_type="application/json", content_encoding="gzip", max_bytes=LIMIT)
    assert caught.value.param == "Content-Encoding"


def test_unsupported_encoding_is_a_400() -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_request(b"{}", content_type="application/json", content_encoding="br", max_bytes=LIMIT)
    assert caught.value.param == "Content-Encoding"


# --- encoding ------------------------------------------------------------------------------------------


def test_json_in_json_out_is_unchanged() -> None:
    body = otlp_json(span_json(ROOT), span_json(CHILD, parent=ROOT))
    out = encode_json(decode_json(body).spans)
    expected = orjson.loads(orjson.dumps(body))
    for span in expected["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        if not span["parentSpanId"]:
            del span["parentSpanId"]
    assert out == expected


def test_protobuf_export_parses_with_the_official_type_into_the_same_spans() -> None:
    spans = decode_json(otlp_json(span_json(ROOT), span_json(CHILD, parent=ROOT))).spans
    parsed = ExportTraceServiceRequest()
    parsed.ParseFromString(encode_protobuf(spans))
    again = decode_request(
        parsed.SerializeToString(),
        content_type="application/x-protobuf",
        content_encoding=None,
        max_bytes=LIMIT,
    ).spans
    assert again == spans
    [resource] = parsed.resource_spans
    assert resource.scope_spans[0].scope.name == "my.lib"
    assert [s.span_id.hex() for s in resource.scope_spans[0].spans] == [ROOT, CHILD]


def test_spans_are_grouped_by_resource_and_scope() -> None:
    a = decode_json(otlp_json(span_json(ROOT))).spans[0]
    b = decode_json(otlp_json(span_json(CHILD))).spans[0]
    b.resource_attributes = [{"key": "service.name", "value": {"stringValue": "other"}}]
    c = decode_json(otlp_json(span_json("1111111111111111"))).spans[0]
    c.scope_name = "other.lib"
    message = to_message(encode_json([a, b, c]))
    assert [len(rs.scope_spans) for rs in message.resource_spans] == [2, 1]


def test_export_response_is_empty_json_on_success() -> None:
    assert export_response(0, "", protobuf=False) == b"{}"
    assert export_response(0, "", protobuf=True) == b""


def test_export_response_reports_partial_success() -> None:
    assert orjson.loads(export_response(2, "2 span(s) rejected: bad", protobuf=False)) == {
        "partialSuccess": {"rejectedSpans": "2", "errorMessage": "2 span(s) rejected: bad"}
    }
    parsed = ExportTraceServiceResponse()
    parsed.ParseFromString(export_response(2, "bad", protobuf=True))
    assert (parsed.partial_success.rejected_spans, parsed.partial_success.error_message) == (2, "bad")


def test_any_value_round_trips_through_the_official_type() -> None:
    value = {"s": "x", "i": 2**40, "f": 1.5, "b": False, "l": [1, "two"], "m": {"k": "v"}, "raw": b"\x00\x01"}
    message = json_format.ParseDict(any_value(value), AnyValue())
    assert json_format.MessageToDict(message) == any_value(value)
    assert plain_attributes(any_value(value)["kvlistValue"]["values"]) == {
        "s": "x",
        "i": 2**40,
        "f": 1.5,
        "b": False,
        "l": [1, "two"],
        "m": {"k": "v"},
        "raw": "AAE=",
    }
