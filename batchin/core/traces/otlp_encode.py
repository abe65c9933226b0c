"""Our spans → OTLP/HTTP payloads (JSON or protobuf) and the export response, through the
official `opentelemetry-proto` types. The reverse direction and the span model live in otlp.py."""

from __future__ import annotations

import orjson
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from batchin.core.traces.otlp import JSON, Span, convert_ids, message_dict, walk


def encode_json(spans: list[Span]) -> JSON:
    """Spans as an OTLP JSON ExportTraceServiceRequest, grouped by resource and scope."""
    groups: dict[bytes, dict[tuple[str, str], list[JSON]]] = {}
    resources: dict[bytes, list[JSON]] = {}
    for span in spans:
        key = orjson.dumps(span.resource_attributes, option=orjson.OPT_SORT_KEYS)
        resources.setdefault(key, span.resource_attributes)
        groups.setdefault(key, {}).setdefault((span.scope_name, span.scope_version), []).append(
            _span_json(span)
        )
    # Empty resources and scopes are left out, as proto3 leaves out an unset message.
    return {
        "resourceSpans": [
            {
                **({"resource": {"attributes": resources[key]}} if resources[key] else {}),
                "scopeSpans": [
                    _scope_spans(name, version, members) for (name, version), members in scopes.items()
                ],
            }
            for key, scopes in groups.items()
        ]
    }


def encode_protobuf(spans: list[Span]) -> bytes:
    message = ExportTraceServiceRequest()
    for resource_json in encode_json(spans)["resourceSpans"]:
        rs = message.resource_spans.add()
        if "resource" in resource_json:
            rs.resource.attributes.extend(_kvs_proto(resource_json["resource"]["attributes"]))
        for scope_json in resource_json["scopeSpans"]:
            ss = rs.scope_spans.add()
            if "scope" in scope_json:
                ss.scope.name = scope_json["scope"].get("name", "")
                ss.scope.version = scope_json["scope"].get("version", "")
            ss.spans.extend(_span_proto(span) for span in scope_json["spans"])
    return message.SerializeToString()


def _span_proto(span: JSON) -> trace_pb2.Span:
    """One span of our OTLP JSON as the protobuf message, built directly (ParseDict is slow)."""
    out = trace_pb2.Span(
        trace_id=bytes.fromhex(span["traceId"]),
        span_id=bytes.fromhex(span["spanId"]),
        parent_span_id=bytes.fromhex(span.get("parentSpanId", "")),
        trace_state=span.get("traceState", ""),
        flags=span.get("flags", 0),
        name=span["name"],
        kind=span["kind"],
        start_time_unix_nano=int(span["startTimeUnixNano"]),
        end_time_unix_nano=int(span["endTimeUnixNano"]),
        attributes=_kvs_proto(span.get("attributes", [])),
    )
    for event in span.get("events", []):
        json_format.ParseDict(event, out.events.add())
    for link in span.get("links", []):
        link = dict(link)
        convert_ids(link, to_proto=True)
        json_format.ParseDict(link, out.links.add())
    out.status.code = span["status"].get("code", 0)
    out.status.message = span["status"].get("message", "")
    return out


def _kvs_proto(key_values: list[JSON]) -> list[KeyValue]:
    return [KeyValue(key=kv["key"], value=_any_proto(kv.get("value", {}))) for kv in key_values]


def _any_proto(value: JSON) -> AnyValue:
    if "stringValue" in value:
        return AnyValue(string_value=value["stringValue"])
    if "intValue" in value:
        return AnyValue(int_value=int(value["intValue"]))
    if "boolValue" in value:
        return AnyValue(bool_value=value["boolValue"])
    return json_format.ParseDict(value, AnyValue())


def to_message(otlp_json: JSON) -> ExportTraceServiceRequest:
    """Our own OTLP JSON (ids as hex) as the official protobuf message."""
    data = orjson.loads(orjson.dumps(otlp_json))  # a copy: ids are rewritten in place
    for scope_spans in walk(data, ("resourceSpans", "resource_spans"), ("scopeSpans", "scope_spans")):
        for span in scope_spans["spans"]:
            convert_ids(span, to_proto=True)
    return json_format.ParseDict(data, ExportTraceServiceRequest())


def export_response(rejected: int, error_message: str, *, protobuf: bool) -> bytes:
    """The ExportTraceServiceResponse: empty on full success, partialSuccess when spans were dropped."""
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.CopyFrom(
            ExportTracePartialSuccess(rejected_spans=rejected, error_message=error_message)
        )
    if protobuf:
        return response.SerializeToString()
    return orjson.dumps(message_dict(response))


def _scope_spans(name: str, version: str, spans: list[JSON]) -> JSON:
    scope: JSON = {}
    if name:
        scope["name"] = name
    if version:
        scope["version"] = version
    return {"scope": scope, "spans": spans} if scope else {"spans": spans}


def _span_json(span: Span) -> JSON:
    out: JSON = {"traceId": span.trace_id, "spanId": span.span_id}
    if span.parent_span_id:
        out["parentSpanId"] = span.parent_span_id
    if span.trace_state:
        out["traceState"] = span.trace_state
    if span.flags:
        out["flags"] = span.flags
    out["name"] = span.name
    out["kind"] = span.kind
    out["startTimeUnixNano"] = str(span.start_unix_nano)
    out["endTimeUnixNano"] = str(span.end_unix_nano)
    if span.attributes:
        out["attributes"] = span.attributes
    if span.events:
        out["events"] = span.events
    if span.links:
        out["links"] = span.links
    status: JSON = {}
    if span.status_message:
        status["message"] = span.status_message
    if span.status_code:
        status["code"] = span.status_code
    out["status"] = status
    return out
