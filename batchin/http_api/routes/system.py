"""Operational routes: /health, /openapi.json, /metrics."""

from __future__ import annotations

import ipaddress

from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import Response

from batchin.errors import ServiceUnavailable, Unauthorized
from batchin.http_api.endpoint import Endpoint
from batchin.http_api.rendering import JSONResponse, render
from batchin.protocol.common import HealthResponse


async def get_health(request: Request) -> Response:
    try:
        async with request.app.state.services.database.read() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        raise ServiceUnavailable("The database is unreachable.") from None
    return render(HealthResponse(status="ok"))


async def get_openapi(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


async def get_metrics(request: Request) -> Response:
    """Prometheus text format, for operators: loopback callers, or the admin token."""
    settings = request.app.state.services.settings
    client = request.client.host if request.client else ""
    token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not (_is_loopback(client) or (settings.admin_token and token == settings.admin_token)):
        raise Unauthorized("/metrics is for operators: call it from loopback or with the admin token.")
    return Response(request.app.state.services.metrics.render(), media_type=CONTENT_TYPE_LATEST)


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
        tag="system",
        errors=(401,),
    ),
]
