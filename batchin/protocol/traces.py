"""Traces (seed: /v1/traces, /v1/traces/{trace_id}, /v1/otlp/traces, /v1/otlp/export)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SpanKindName = Literal["unspecified", "internal", "server", "client", "producer", "consumer"]
StatusName = Literal["unset", "ok", "error"]


class TraceItem(BaseModel):
    trace_id: str = Field(description="W3C trace id, 32 hex digits")
    run_id: str | None = Field(description="X-BatchIn-Run-Id of the call that started the trace")
    record_id: str | None = Field(description="audit record (X-VaaS-Record-Id) of that call")
    route_id: str | None
    provider: str | None
    environment: str | None
    prompt_version_id: str | None
    model_id: str | None
    source: Literal["batchin", "otlp"] = Field(description="who first reported the trace")
    created_at: str


class TraceList(BaseModel):
    items: list[TraceItem]


class SpanStatus(BaseModel):
    code: StatusName
    message: str


class SpanOut(BaseModel):
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: SpanKindName
    start_time_unix_nano: str = Field(description="int64 as a string, as in OTLP JSON")
    end_time_unix_nano: str
    duration_ms: float
    status: SpanStatus
    attributes: dict[str, Any]
    resource: dict[str, Any] = Field(description="resource attributes")
    events: list[dict[str, Any]] = Field(description="OTLP JSON span events")
    links: list[dict[str, Any]] = Field(description="OTLP JSON span links")
    source: Literal["batchin", "otlp"]


class TraceDetail(TraceItem):
    spans: list[SpanOut] = Field(description="oldest first")


class OtlpExportRequest(BaseModel):
    """OTLP/HTTP ExportTraceServiceRequest in JSON (or the same message as application/x-protobuf)."""

    model_config = ConfigDict(extra="allow")

    resourceSpans: list[dict[str, Any]] = Field(default_factory=list)  # OTLP's name


class OtlpPartialSuccess(BaseModel):
    model_config = ConfigDict(extra="allow")

    rejectedSpans: str | None = None  # OTLP's name
    errorMessage: str | None = None


class OtlpExportResponse(BaseModel):
    """ExportTraceServiceResponse: `{}` on success; `partialSuccess` when spans were rejected."""

    partialSuccess: OtlpPartialSuccess | None = None  # OTLP's name
