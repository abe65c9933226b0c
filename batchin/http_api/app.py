"""The Starlette app, declared in one place."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from batchin.console import console_routes
from batchin.http_api.endpoint import Endpoint
from batchin.http_api.errors import EXCEPTION_HANDLERS
from batchin.http_api.hot_routes import HotRoutes
from batchin.http_api.middleware import BODY_SEND, RequestIdMiddleware
from batchin.http_api.openapi import build_openapi
from batchin.http_api.routes import accounts, docs_pages, models, system, text, topup, usage, verify_page
from batchin.http_api.routes import audio as audio_routes
from batchin.http_api.routes import audit as audit_routes
from batchin.http_api.routes import batches as batch_routes
from batchin.http_api.routes import discovery as discovery_routes
from batchin.http_api.routes import embeddings as embedding_routes
from batchin.http_api.routes import files as file_routes
from batchin.http_api.routes import images as image_routes
from batchin.http_api.routes import media as media_routes
from batchin.http_api.routes import prompts as prompt_routes
from batchin.http_api.routes import traces as trace_routes
from batchin.http_api.routes import videos as video_routes
from batchin.http_api.routes import webhooks as webhook_routes


def all_endpoints() -> list[Endpoint]:
    return [
        *system.ENDPOINTS,
        *models.ENDPOINTS,
        *text.ENDPOINTS,
        *embedding_routes.ENDPOINTS,
        *audio_routes.ENDPOINTS,
        *image_routes.ENDPOINTS,
        *video_routes.ENDPOINTS,
        *batch_routes.ENDPOINTS,
        *file_routes.ENDPOINTS,
        *media_routes.ENDPOINTS,
        *accounts.ENDPOINTS,
        *usage.ENDPOINTS,
        *topup.ENDPOINTS,
        *audit_routes.ENDPOINTS,
        *verify_page.ENDPOINTS,
        *trace_routes.ENDPOINTS,
        *prompt_routes.ENDPOINTS,
        *webhook_routes.ENDPOINTS,
        *discovery_routes.ENDPOINTS,
        *docs_pages.ENDPOINTS,
    ]


class _HttpApp(Starlette):
    """Starlette, with two shortcuts that hold while its only layers before a route are the ones
    that act on a response's start message alone and pass body messages through unchanged
    (Starlette's error and exception layers and our RequestIdMiddleware; a middleware added later,
    which might rewrite bodies or want every request, turns both off):

    - the hot inference routes are served by `HotRoutes` (http_api/hot_routes.py), past the
      middleware stack and the router, with the same request id, error handling and scope;
    - every other route's streaming body gets the server's own `send` (scope state BODY_SEND), so
      an SSE event goes to the server past four wrapper frames."""

    _passes_bodies: bool | None = None  # settled with the middleware stack, on the first call
    hot_routes: HotRoutes | None = None  # set by build_http_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        passes = self._passes_bodies
        if passes is None:
            classes: list[object] = [m.cls for m in self.user_middleware]
            passes = classes == [RequestIdMiddleware] and getattr(self, "max_body_size", None) is None
            self._passes_bodies = passes
        if passes and scope["type"] == "http":
            hot = self.hot_routes
            if hot is not None and scope["method"] == "POST" and not scope.get("root_path"):
                route = hot.routes.get(scope["path"])
                if route is not None:
                    scope["app"] = self
                    scope["router"] = self.router
                    await hot.serve(route, scope, receive, send)
                    return
            scope.setdefault("state", {})[BODY_SEND] = send
        await super().__call__(scope, receive, send)


def build_http_app(
    *,
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]] | None = None,
    server_url: str = "/",
    extra_routes: list[BaseRoute] | None = None,
) -> Starlette:
    """`extra_routes` (MCP at /v1/mcp) go after every declared route."""
    endpoints = all_endpoints()
    # The inference routes first: Starlette tests the routes in order until one matches (a regex
    # each), and these take almost every request. No other route's path overlaps theirs.
    hot = {id(ep) for ep in text.ENDPOINTS}
    ordered = [*text.ENDPOINTS, *(ep for ep in endpoints if id(ep) not in hot)]
    routes: list[BaseRoute] = [route for ep in ordered for route in ep.routes()]
    # The same Routes the router holds, served past Starlette's layers (see _HttpApp).
    hot_paths = {
        path
        for ep in (*text.ENDPOINTS, *embedding_routes.ENDPOINTS)
        if ep.method == "POST"
        for path in ep.paths
    }
    hot_routes = {
        route.path: route
        for route in routes
        if isinstance(route, Route) and route.path in hot_paths and route.methods == {"POST"}
    }
    routes.extend(console_routes())  # the web console (HTML pages, not API operations)
    routes.extend(extra_routes or [])
    handlers: Any = EXCEPTION_HANDLERS
    app = _HttpApp(
        routes=routes,
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.hot_routes = HotRoutes(hot_routes, app.exception_handlers)
    app.state.openapi = build_openapi(endpoints, server_url=server_url)
    return app


__all__ = ["all_endpoints", "build_http_app"]
