"""/v1/usage/*."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from starlette.requests import Request
from starlette.responses import Response

from batchin.core.billing.usage import UsageService
from batchin.core.context import CallContext
from batchin.http_api.endpoint import Endpoint, QueryParam
from batchin.http_api.paging import render_page
from batchin.http_api.rendering import query_int, render
from batchin.protocol.usage import ModelUsage, UsageLog, UsageSummary
from batchin.services import Services


@dataclass(frozen=True, slots=True)
class UsageDeps:
    """What /v1/usage/* use."""

    usage: UsageService

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(usage=services.usage)


async def list_usage_logs(request: Request, ctx: CallContext, deps: UsageDeps) -> Response:
    limit = query_int(request, "limit", 50)
    offset = query_int(request, "offset", 0)
    logs = await deps.usage.logs_page(ctx.principal.user_id, limit=limit, offset=offset)
    return render_page(request, logs)


async def get_usage_summary(request: Request, ctx: CallContext, deps: UsageDeps) -> Response:
    return render(await deps.usage.summary(ctx.principal.user_id))


async def get_usage_by_model(request: Request, ctx: CallContext, deps: UsageDeps) -> Response:
    return render(await deps.usage.by_model(ctx.principal.user_id))


ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/usage/logs",
        list_usage_logs,
        'Request-level usage logs, newest first; when more exist, a `Link: <...>; rel="next"` '
        "header names the next page.",
        response_model=list[UsageLog],
        deps=UsageDeps,
        tag="usage",
        errors=(400,),
        query=(
            QueryParam(
                "limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "rows (1-500)"
            ),
            QueryParam("offset", {"type": "integer", "minimum": 0, "default": 0}, "rows to skip"),
        ),
        scope="account:read",
    ),
    Endpoint(
        "GET",
        "/v1/usage/summary",
        get_usage_summary,
        "Total requests, tokens and cost.",
        response_model=UsageSummary,
        deps=UsageDeps,
        tag="usage",
        scope="account:read",
    ),
    Endpoint(
        "GET",
        "/v1/usage/by-model",
        get_usage_by_model,
        "Totals per model.",
        response_model=list[ModelUsage],
        deps=UsageDeps,
        tag="usage",
        scope="account:read",
    ),
]
