"""Plain ASGI middleware (not BaseHTTPMiddleware, which breaks context variables)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from batchin.core.random_ids import uuid4_text

# The scope's state key of the send a streaming body may use: the server's own, set by the app
# (http_api/app.py) when every layer between it and a route passes body messages through unchanged.
BODY_SEND = "body_send"
_ID_NAME = b"x-request-id"
_ID_LINE = b"\n" + _ID_NAME + b"\n"


def new_request_id() -> str:
    # A version 4 UUID's 32 hex digits, from the pooled random bytes (no UUID object).
    return "req_" + uuid4_text().replace("-", "")


def add_request_id(headers: list[tuple[bytes, bytes]], request_id: str) -> None:
    """Appends `X-Request-Id` to a response's raw headers unless it has one already."""
    # The names joined and lowercased in C, not a Python call per header.
    if _ID_LINE not in b"\n%s\n" % b"\n".join(dict(headers)).lower():
        headers.append((_ID_NAME, request_id.encode("ascii")))


class RequestIdMiddleware:
    """Gives every HTTP request an id (state.request_id) and returns it as `X-Request-Id`. It acts
    on the response's start message only and passes body messages through (see BODY_SEND). The hot
    inference routes get the same from http_api/hot_routes.py, which they reach without it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                add_request_id(headers, request_id)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)
