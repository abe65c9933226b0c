"""OTLP/HTTP trace payloads → our spans, through the official `opentelemetry-proto` types (the way
back out is otlp_encode.py).

One canonical in-memory form: a `Span` whose attributes, events and links are kept in OTLP's JSON
shape (the proto3 JSON mapping, with trace and span ids as hex, int64 as strings, enums as numbers),
so what comes in as JSON or protobuf goes back out unchanged. Both encodings pass through
`ExportTraceServiceRequest`: JSON bodies are checked by `json_format.ParseDict`, protobuf bodies by
`ParseFromString`, then every span is read back from the message the same way.

Spans with malformed ids (wrong length, not hex, all zero) or times beyond int64 are rejected one by
one and reported in `partialSuccess`; a body that is not OTLP at all is a 400.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from batchin.errors import InvalidRequest, PayloadTooLarge

JSON = dict[str, Any]

PROTOBUF = "application/x-protobuf"
JSON_TYPE = "application/json"
_PROTOBUF_TYPES = frozenset({PROTOBUF, "application/protobuf", "application/vnd.google.protobuf"})

SPAN_KIND_INTERNAL = trace_pb2.Span.SPAN_KIND_INTERNAL
SPAN_KIND_SERVER = trace_pb2.Span.SPAN_KIND_SERVER
STATUS_UNSET = trace_pb2.Status.STATUS_CODE_UNSET
STATUS_OK = trace_pb2.Status.STATUS_CODE_OK
STATUS_ERROR = trace_pb2.Status.STATUS_CODE_ERROR
_INT64_MAX = 2**63 - 1


@dataclass(slots=True)
class Span:
    trace_id: str  # 32 lowercase hex
    span_id: str  # 16 lowercase hex
    parent_span_id: str | None
    name: str
    kind: int  # OTLP SpanKind number
    start_unix_nano: int
    end_unix_nano: int
    status_code: int = STATUS_UNSET
    status_message: str = ""
    attributes: list[JSON] = field(default_factory=list)  # OTLP JSON KeyValue objects
    resource_attributes: list[JSON] = field(default_factory=list)
    events: list[JSON] = field(default_factory=list)
    links: list[JSON] = field(default_factory=list)
    trace_state: str = ""
    flags: int = 0
    scope_name: str = ""
    scope_version: str = ""
    source: str = "batchin"  # batchin: our own call; otlp: sent to /v1/otlp/traces


@dataclass(frozen=True, slots=True)
class DecodedSpans:
    spans: list[Span]
    rejected: int
    error_message: str


# -- attribute values ------------------------------------------------------------------------------


def any_value(value: object) -> JSON:
    """A Python value as an OTLP JSON AnyValue (bool before int: bool is an int in Python)."""
    kind = type(value)  # exact types first: this runs for every attribute of every span we record
    if kind is str:
        return {"stringValue": value}
    if kind is int:
        return {"intValue": str(value)}
    if kind is float:
        return {"doubleValue": value}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode("ascii")}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": key_values(value)}}
    return {}


def key_values(attributes: Mapping[str, object]) -> list[JSON]:
    return [{"key": key, "value": any_value(value)} for key, value in attributes.items() if value is not None]


def plain_value(value: JSON) -> Any:
    """An OTLP JSON AnyValue as plain JSON for display (bytes stay base64)."""
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return value["doubleValue"]
    if "arrayValue" in value:
        return [plain_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return plain_attributes(value["kvlistValue"].get("values", []))
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def plain_attributes(key_values: list[JSON]) -> dict[str, Any]:
    return {kv["key"]: plain_value(kv.get("value", {})) for kv in key_values}


# -- decoding --------------------------------------------------------------------------------------


def decode_request(
    body: bytes, *, content_type: str | None, content_encoding: str | None, max_bytes: int
) -> DecodedSpans:
    """An OTLP/HTTP ExportTraceServiceRequest body (JSON or protobuf, optionally gzip) → spans."""
    media = media_type(content_type)
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "gzip":
        body = _gunzip(body, max_bytes)
    elif encoding != "identity":
        raise InvalidRequest(
            f"Unsupported Content-Encoding '{encoding}'; send gzip or none.", param="Content-Encoding"
        )
    if media == JSON_TYPE:
        message, rejected, reason = _parse_json(body)
    elif media in _PROTOBUF_TYPES:
        message, rejected, reason = _parse_protobuf(body), 0, ""
    else:
        raise InvalidRequest(
            f"Unsupported Content-Type '{media or ''}'; send {JSON_TYPE} or {PROTOBUF}.", param="Content-Type"
        )
    spans: list[Span] = []
    for span_or_reason in _spans_of(message):
        if isinstance(span_or_reason, Span):
            spans.append(span_or_reason)
        else:
            rejected += 1
            reason = reason or span_or_reason
    return DecodedSpans(spans, rejected, f"{rejected} span(s) rejected: {reason}" if rejected else "")


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    """Decompress at most `max_bytes` (a small gzip body must not expand without bound)."""
    out = bytearray()
    rest = body
    try:
        while rest:
            inflater = zlib.decompressobj(wbits=31)
            out += inflater.decompress(rest, max_bytes + 1 - len(out))
            if len(out) > max_bytes or inflater.unconsumed_tail:
                raise PayloadTooLarge(f"Decompressed body exceeds the limit of {max_bytes} bytes.")
            if not inflater.eof:
                raise InvalidRequest("Truncated gzip body.", param="Content-Encoding")
            rest = inflater.unused_data  # gzip allows several members back to back
    except zlib.error:
        raise InvalidRequest("Body is not valid gzip.", param="Content-Encoding") from None
    return bytes(out)


def _parse_protobuf(body: bytes) -> ExportTraceServiceRequest:
    message = ExportTraceServiceRequest()
    try:
        message.ParseFromString(body)
    except DecodeError:
        raise InvalidRequest("Body is not a protobuf ExportTraceServiceRequest.") from None
    return message


def _parse_json(body: bytes) -> tuple[ExportTraceServiceRequest, int, str]:
    try:
        data = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError:
        raise InvalidRequest("Body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidRequest("Body must be a JSON ExportTraceServiceRequest object.")
    rejected, reason = _hex_ids_to_proto_json(data)
    try:
        message = json_format.ParseDict(data, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise InvalidRequest(f"Body is not an OTLP ExportTraceServiceRequest: {_short(exc)}") from None
    return message, rejected, reason


def _hex_ids_to_proto_json(data: JSON) -> tuple[int, str]:
    """OTLP JSON writes ids as hex where proto3 JSON has base64: convert in place, dropping (and
    counting) spans whose ids are not hex. Structure errors are left for ParseDict to report."""
    rejected, reason = 0, ""
    for scope_spans in walk(data, ("resourceSpans", "resource_spans"), ("scopeSpans", "scope_spans")):
        spans = _field(scope_spans, "spans", "spans")
        if not isinstance(spans, list):
            continue
        kept = []
        for span in spans:
            if isinstance(span, dict) and convert_ids(span, to_proto=True):
                kept.append(span)
            else:
                rejected += 1
                reason = reason or "trace_id/span_id must be hex (32 and 16 digits)"
        scope_spans["spans"] = kept
    return rejected, reason


def walk(data: JSON, outer: tuple[str, str], inner: tuple[str, str]) -> Iterator[JSON]:
    resource_spans = _field(data, *outer)
    for rs in resource_spans if isinstance(resource_spans, list) else ():
        scope_spans = _field(rs, *inner) if isinstance(rs, dict) else None
        for ss in scope_spans if isinstance(scope_spans, list) else ():
            if isinstance(ss, dict):
                yield ss


def _field(obj: JSON, camel: str, snake: str) -> Any:
    return obj.get(camel, obj.get(snake))


_ID_FIELDS = (("traceId", "trace_id"), ("spanId", "span_id"))
_PARENT = ("parentSpanId", "parent_span_id")


def convert_ids(span: JSON, *, to_proto: bool) -> bool:
    """Rewrite a span's (and its links') ids between hex and base64; False if one is malformed."""
    fields = (*_ID_FIELDS, _PARENT)
    links = _field(span, "links", "links")
    objects = [(span, fields)] + [(link, _ID_FIELDS) for link in (links if isinstance(links, list) else [])]
    for obj, names in objects:
        if not isinstance(obj, dict):
            return False
        for camel, snake in names:
            key = camel if camel in obj else snake
            value = obj.get(key)
            if value in (None, ""):
                continue
            if not isinstance(value, str):
                return False
            try:
                raw = bytes.fromhex(value) if to_proto else base64.b64decode(value, validate=True)
            except (ValueError, binascii.Error):
                return False
            obj[key] = base64.b64encode(raw).decode("ascii") if to_proto else raw.hex()
    return True


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _spans_of(message: ExportTraceServiceRequest) -> Iterator[Span | str]:
    for rs in message.resource_spans:
        resource = _kvs_json(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                yield _span(span, resource, ss.scope.name, ss.scope.version)


def _span(span: trace_pb2.Span, resource: list[JSON], scope_name: str, scope_version: str) -> Span | str:
    if len(span.trace_id) != 16 or not any(span.trace_id):
        return "trace_id must be 16 bytes, not all zero"
    if len(span.span_id) != 8 or not any(span.span_id):
        return "span_id must be 8 bytes, not all zero"
    if span.parent_span_id and len(span.parent_span_id) != 8:
        return "parent_span_id must be 8 bytes or empty"
    if max(span.start_time_unix_nano, span.end_time_unix_nano) > _INT64_MAX:
        return "times must fit in int64 nanoseconds"
    links = []
    for link in span.links:
        if len(link.trace_id) != 16 or len(link.span_id) != 8:
            return "link ids must be 16 and 8 bytes"
        as_json = message_dict(link)
        convert_ids(as_json, to_proto=False)
        links.append(as_json)
    return Span(
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex() if any(span.parent_span_id) else None,
        name=_text(span.name),
        kind=int(span.kind),
        start_unix_nano=span.start_time_unix_nano,
        end_unix_nano=span.end_time_unix_nano,
        status_code=int(span.status.code),
        status_message=_text(span.status.message),
        attributes=_kvs_json(span.attributes),
        resource_attributes=resource,
        events=[message_dict(event) for event in span.events],
        links=links,
        trace_state=_text(span.trace_state),
        flags=span.flags,
        scope_name=_text(scope_name),
        scope_version=_text(scope_version),
        source="otlp",
    )


def _text(value: str) -> str:
    # PostgreSQL text cannot hold NUL; JSON columns escape it, plain columns need this.
    return value.replace("\x00", "\ufffd")


def _kvs_json(key_values: Any) -> list[JSON]:
    """KeyValues as OTLP JSON, as MessageToDict writes them (that is several times slower)."""
    return [{"key": kv.key, "value": _any_json(kv.value)} for kv in key_values]


def _any_json(value: AnyValue) -> JSON:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return {"stringValue": value.string_value}
    if kind == "int_value":
        return {"intValue": str(value.int_value)}
    if kind == "bool_value":
        return {"boolValue": value.bool_value}
    if kind == "double_value":
        return message_dict(value)  # NaN and infinities are written as strings
    if kind == "array_value":
        return {"arrayValue": {"values": [_any_json(v) for v in value.array_value.values]}}
    if kind == "kvlist_value":
        return {"kvlistValue": {"values": _kvs_json(value.kvlist_value.values)}}
    if kind == "bytes_value":
        return {"bytesValue": base64.b64encode(value.bytes_value).decode("ascii")}
    return {}


def message_dict(message: Any) -> JSON:
    result: JSON = json_format.MessageToDict(message, use_integers_for_enums=True)
    return result


# -- encoding --------------------------------------------------------------------------------------
