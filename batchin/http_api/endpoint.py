"""The route table's element: one declaration per operation, from which both the Starlette routes
and the OpenAPI document are built, so the two never disagree."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batchin.core.context import CallContext
from batchin.core.trace_context import continue_trace
from batchin.errors import Unauthorized

Handler = Callable[[Request, CallContext], Awaitable[Response]]
PublicHandler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class QueryParam:
    name: str
    schema: dict[str, Any]
    description: str


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler | PublicHandler
    summary: str
    public: bool = False
    request_model: Any = None
    response_model: Any = None
    status_code: int = 200
    tag: str = "default"
    query: tuple[QueryParam, ...] = ()
    errors: tuple[int, ...] = ()
    content_type: str = "application/json"
    raw_body: bool = False
    extra_paths: tuple[str, ...] = field(default=())

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.path, *self.extra_paths)

    @property
    def operation_id(self) -> str:
        return getattr(self.handler, "__name__", "operation")

    def routes(self) -> list[Route]:
        endpoint = self._public_endpoint() if self.public else self._authenticated_endpoint()
        return [
            Route(path, endpoint, methods=[self.method], name=f"{self.operation_id}:{path}")
            for path in (self.path, *self.extra_paths)
        ]

    def _public_endpoint(self) -> Callable[[Request], Awaitable[Response]]:
        handler: Any = self.handler

        async def run(request: Request) -> Response:
            response: Response = await handler(request)
            return response

        return run

    def _authenticated_endpoint(self) -> Callable[[Request], Awaitable[Response]]:
        handler: Any = self.handler

        async def run(request: Request) -> Response:
            services = request.app.state.services
            principal, rate = await services.auth.admit(bearer_secret(request))
            ctx = CallContext(
                principal=principal,
                request_id=request.state.request_id,
                region=request.headers.get("x-batchin-region"),
                rate_limit=rate,
                trace=continue_trace(request.headers.get("traceparent")),
                prompt_version=_prompt_version(request.headers.get("x-batchin-prompt-version")),
            )
            response: Response = await handler(request, ctx)
            response.headers.update(rate.headers())
            return response

        return run


def _prompt_version(header: str | None) -> str:
    value = (header or "").strip()
    return value[:200] if value else "default"


def openapi_path(path: str) -> str:
    """A route path as OpenAPI writes it: Starlette's converters (`{id:path}`) dropped."""
    return re.sub(r"{(\w+):\w+}", r"{\1}", path)


def bearer_secret(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("Invalid or missing API key. Send Authorization: Bearer <API_KEY>.")
    return value.strip()
