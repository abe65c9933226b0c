"""/v1/traces, /v1/traces/{trace_id}, /v1/otlp/traces and /v1/otlp/export."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from starlette.requests import Request
from starlette.responses import Response

from batchin.core.context import CallContext
from batchin.core.traces.otlp import JSON_TYPE, PROTOBUF, media_type
from batchin.core.traces.otlp_encode import export_response
from batchin.core.traces.service import MAX_EXPORT_SPANS, MAX_LIST, TraceService
from batchin.http_api.endpoint import Endpoint, QueryParam
from batchin.http_api.rendering import JSONResponse, query_int, read_body, render
from batchin.protocol.traces import OtlpExportRequest, OtlpExportResponse, TraceDetail, TraceList
from batchin.services import Services

_PROTOBUF_TYPES = (PROTOBUF, "application/protobuf")


@dataclass(frozen=True, slots=True)
class TraceDeps:
    """What /v1/traces* and /v1/otlp/* use."""

    traces: TraceService

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(traces=services.traces)


async def list_traces(request: Request, ctx: CallContext, deps: TraceDeps) -> Response:
    limit = query_int(request, "limit", 20)
    return render(await deps.traces.list_traces(ctx.principal.user_id, limit=limit))


async def get_trace(request: Request, ctx: CallContext, deps: TraceDeps) -> Response:
    trace_id = request.path_params["trace_id"]
    return render(await deps.traces.get_trace(ctx.principal.user_id, trace_id))


async def export_otlp_traces(request: Request, ctx: CallContext, deps: TraceDeps) -> Response:
    traces = deps.traces
    body = await read_body(request, traces.otlp_max_bytes)
    content_type = request.headers.get("content-type")
    rejected, message = await traces.ingest_otlp(
        ctx, body, content_type=content_type, content_encoding=request.headers.get("content-encoding")
    )
    protobuf = media_type(content_type) in _PROTOBUF_TYPES
    return Response(
        export_response(rejected, message, protobuf=protobuf), media_type=PROTOBUF if protobuf else JSON_TYPE
    )


async def get_otlp_export(request: Request, ctx: CallContext, deps: TraceDeps) -> Response:
    protobuf = prefers_protobuf(request.headers.get("accept"))
    payload = await deps.traces.export(
        ctx.principal.user_id,
        trace_id=request.query_params.get("trace_id"),
        limit=query_int(request, "limit", 1000),
        protobuf=protobuf,
    )
    if isinstance(payload, bytes):
        return Response(payload, media_type=PROTOBUF)
    return JSONResponse(payload)


def prefers_protobuf(accept: str | None) -> bool:
    """Content negotiation between OTLP JSON (the default) and protobuf, by `Accept` q-values."""
    best_json, best_protobuf = 0.0, 0.0
    for part in (accept or "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.lower()
        if media in _PROTOBUF_TYPES:
            best_protobuf = max(best_protobuf, quality)
        elif media in (JSON_TYPE, "application/*", "*/*"):
            best_json = max(best_json, quality)
    return best_protobuf > best_json


ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/traces",
        list_traces,
        "The caller's traces, newest first, with their route, prompt version and audit record.",
        response_model=TraceList,
        deps=TraceDeps,
        tag="traces",
        errors=(400,),
        query=(
            QueryParam(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIST, "default": 20},
                f"traces to return (1-{MAX_LIST})",
            ),
        ),
        scope="account:read",
    ),
    Endpoint(
        "GET",
        "/v1/traces/{trace_id}",
        get_trace,
        "One of the caller's traces with its spans.",
        response_model=TraceDetail,
        deps=TraceDeps,
        tag="traces",
        errors=(404,),
        scope="account:read",
    ),
    Endpoint(
        "POST",
        "/v1/otlp/traces",
        export_otlp_traces,
        "Receive OTLP/HTTP traces (JSON or protobuf, optionally gzip) into the caller's trace view.",
        request_model=OtlpExportRequest,
        response_model=OtlpExportResponse,
        deps=TraceDeps,
        tag="traces",
        errors=(400, 413),
        raw_body=True,
        scope="inference",
    ),
    Endpoint(
        "GET",
        "/v1/otlp/export",
        get_otlp_export,
        "The caller's spans as OTLP JSON (default) or protobuf (Accept: application/x-protobuf).",
        response_model=OtlpExportRequest,
        deps=TraceDeps,
        tag="traces",
        errors=(400,),
        query=(
            QueryParam("trace_id", {"type": "string", "pattern": "^[0-9a-fA-F]{32}$"}, "only this trace"),
            QueryParam(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_EXPORT_SPANS, "default": 1000},
                f"newest spans to return (1-{MAX_EXPORT_SPANS})",
            ),
        ),
        scope="account:read",
    ),
]
