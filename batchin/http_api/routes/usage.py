"""/v1/usage/*."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from batchin.core.context import CallContext
from batchin.http_api.endpoint import Endpoint, QueryParam
from batchin.http_api.rendering import query_int, render
from batchin.protocol.usage import ModelUsage, UsageLog, UsageSummary


async def list_usage_logs(request: Request, ctx: CallContext) -> Response:
    limit = query_int(request, "limit", 50)
    offset = query_int(request, "offset", 0)
    logs = await request.app.state.services.usage.list_logs(ctx.principal.user_id, limit=limit, offset=offset)
    return render(logs)


async def get_usage_summary(request: Request, ctx: CallContext) -> Response:
    return render(await request.app.state.services.usage.summary(ctx.principal.user_id))


async def get_usage_by_model(request: Request, ctx: CallContext) -> Response:
    return render(await request.app.state.services.usage.by_model(ctx.principal.user_id))


ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/usage/logs",
        list_usage_logs,
        "Request-level usage logs, newest first.",
        response_model=list[UsageLog],
        tag="usage",
        errors=(400,),
        query=(
            QueryParam(
                "limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "rows (1-500)"
            ),
            QueryParam("offset", {"type": "integer", "minimum": 0, "default": 0}, "rows to skip"),
        ),
    ),
    Endpoint(
        "GET",
        "/v1/usage/summary",
        get_usage_summary,
        "Total requests, tokens and cost.",
        response_model=UsageSummary,
        tag="usage",
    ),
    Endpoint(
        "GET",
        "/v1/usage/by-model",
        get_usage_by_model,
        "Totals per model.",
        response_model=list[ModelUsage],
        tag="usage",
    ),
]
