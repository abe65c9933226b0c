"""Operational routes: /health, /openapi.json, /metrics."""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from typing import Self

from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import Response

from batchin.core.serving.metrics import InferenceMetrics
from batchin.errors import ServiceUnavailable, Unauthorized
from batchin.http_api.endpoint import Endpoint
from batchin.http_api.rendering import JSONResponse, render
from batchin.protocol.common import HealthResponse
from batchin.services import Services
from batchin.store.database import Database


@dataclass(frozen=True, slots=True)
class SystemDeps:
    """What /health and /metrics use."""

    database: Database
    metrics: InferenceMetrics
    admin_token: str | None
    loopback_trusted: bool

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(
            database=services.database,
            metrics=services.metrics,
            admin_token=services.settings.admin_token,
            loopback_trusted=services.settings.metrics_loopback_trusted,
        )


async def get_health(request: Request, deps: SystemDeps) -> Response:
    try:
        async with deps.database.read() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        raise ServiceUnavailable("The database is unreachable.") from None
    return render(HealthResponse(status="ok"))


async def get_openapi(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


async def get_metrics(request: Request, deps: SystemDeps) -> Response:
    """Prometheus text format, for operators: loopback callers (unless that trust is turned off),
    or the admin token."""
    client = request.client.host if request.client else ""
    if not ((deps.loopback_trusted and _is_loopback(client)) or _has_admin_token(request, deps.admin_token)):
        raise Unauthorized("/metrics is for operators: call it from loopback or with the admin token.")
    return Response(deps.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _has_admin_token(request: Request, admin_token: str | None) -> bool:
    if not admin_token:
        return False
    token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    # Constant time: how long a wrong guess takes must not tell how much of it was right.
    return hmac.compare_digest(token.encode("utf-8"), admin_token.encode("utf-8"))


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


ENDPOINTS = [
    Endpoint(
        "GET",
        "/health",
        get_health,
        "Liveness and database reachability.",
        public=True,
        response_model=HealthResponse,
        deps=SystemDeps,
        tag="system",
        errors=(503,),
    ),
    Endpoint("GET", "/openapi.json", get_openapi, "This document.", public=True, tag="system"),
    Endpoint(
        "GET",
        "/metrics",
        get_metrics,
        "Prometheus metrics (operators).",
        public=True,
        content_type="text/plain",
        deps=SystemDeps,
        tag="system",
        errors=(401,),
    ),
]
