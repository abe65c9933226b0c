"""The inference routes (POST /v1/chat/completions, /v1/completions, /v1/responses, /v1/embeddings)
served straight from the app's `__call__`, past Starlette's middleware stack and router.

Why: those layers (the error middleware, our request-id middleware, the exception middleware, the
router's and the route's frames, `request_response` with its own exception wrapper) are about ten
coroutine frames that every request's task suspends and resumes through on each of its waits
(admission, the engine, the receipt, the producer's end), and each response message went through
three `send` wrappers. Here a hot request pays two frames and one wrapper, for the same behaviour:

- the request gets its id (`state.request_id`) and its response `X-Request-Id` exactly as
  `RequestIdMiddleware` gives them (appended to the headers unless the response has one);
- an error leaves through the app's exception handlers, looked up as Starlette looks them up
  (status handlers for an `HTTPException`, then the exception's classes in MRO order), with the
  same 500 path as Starlette's `ServerErrorMiddleware` (its handler, the response if none has
  started, the exception raised again for the server to log);
- the scope carries what Starlette's layers put in it (`app`, `router`, `route`, `endpoint`,
  `path_params`, `state[BODY_SEND]`).

Everything else (other paths, other methods, a root path, a middleware added to the app) goes
through Starlette unchanged; `HttpApp` (http_api/app.py) decides.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from batchin.http_api.middleware import BODY_SEND, add_request_id, new_request_id

__all__ = ["HotRoutes"]

RouteEndpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Exception], Awaitable[Response]]


class HotRoutes:
    """The hot routes of one app: path → its Starlette Route (which the router also holds), whose
    endpoint function is called directly."""

    __slots__ = ("_error_handler", "_exception_handlers", "_handlers", "_status_handlers", "routes")

    def __init__(self, routes: dict[str, Route], exception_handlers: dict[Any, Any]) -> None:
        self.routes = routes
        self._exception_handlers = exception_handlers  # the app's own dict: read on the first call
        self._handlers: dict[type[BaseException], Handler] | None = None
        self._status_handlers: dict[int, Handler] = {}
        self._error_handler: Handler | None = None

    def _split_handlers(self) -> dict[type[BaseException], Handler]:
        """As Starlette.build_middleware_stack splits them, also on the first request (so a handler
        added after the routes were built counts, as it does for Starlette's stack)."""
        handlers: dict[type[BaseException], Handler] = {}
        for key, handler in self._exception_handlers.items():
            if key in (500, Exception):
                self._error_handler = handler
            elif isinstance(key, int):
                self._status_handlers[key] = handler
            else:
                handlers[key] = handler
        self._handlers = handlers
        return handlers

    async def serve(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        """One request to a hot route; `scope["app"]` and `scope["router"]` are set by the caller."""
        endpoint: RouteEndpoint = route.endpoint
        request_id = new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state[BODY_SEND] = send  # no layer here rewrites bodies
        scope["route"] = route
        scope["endpoint"] = endpoint
        scope["path_params"] = {}
        request = Request(scope, receive, send)
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            try:
                response = await endpoint(request)
                add_request_id(response.raw_headers, request_id)
                await response(scope, receive, send_tracked)
            except Exception as exc:
                handler = self._handler(exc)
                if handler is None:
                    raise
                if started:
                    raise RuntimeError("Caught handled exception, but response already started.") from exc
                response = await handler(request, exc)
                add_request_id(response.raw_headers, request_id)
                await response(scope, receive, send_tracked)
                exc.__traceback__ = None  # reused exception instances would gather tracebacks
        except Exception as exc:
            # Starlette's ServerErrorMiddleware: the 500 handler (it logs, and its envelope carries
            # the request id), sent unless a response has started, and the error raised again.
            if self._handlers is None:
                self._split_handlers()
            if self._error_handler is None:
                error: Response = PlainTextResponse("Internal Server Error", status_code=500)
            else:
                error = await self._error_handler(Request(scope), exc)
            if not started:
                await error(scope, receive, send)
            raise

    def _handler(self, exc: Exception) -> Handler | None:
        handlers = self._handlers
        if handlers is None:
            handlers = self._split_handlers()
        if isinstance(exc, HTTPException):
            handler = self._status_handlers.get(exc.status_code)
            if handler is not None:
                return handler
        for cls in type(exc).__mro__:
            found = handlers.get(cls)
            if found is not None:
                return found
        return None
