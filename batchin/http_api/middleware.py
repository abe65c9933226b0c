"""Plain ASGI middleware (not BaseHTTPMiddleware, which breaks context variables)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from batchin.core.random_ids import uuid4_text

# The scope's state key of the send a streaming body may use: the server's own, set by the app
# (http_api/app.py) when every layer between it and a route passes body messages through unchanged.
BODY_SEND = "body_send"
_ID_LINE = b"\nx-request-id\n"


class RequestIdMiddleware:
    """Gives every HTTP request an id (state.request_id) and returns it as `X-Request-Id`. It acts
    on the response's start message only and passes body messages through (see BODY_SEND)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # A version 4 UUID's 32 hex digits, from the pooled random bytes (no UUID object).
        request_id = "req_" + uuid4_text().replace("-", "")
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                # The names joined and lowercased in C, not a Python call per header.
                if _ID_LINE not in b"\n%s\n" % b"\n".join(dict(headers)).lower():
                    headers.append(header)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)
