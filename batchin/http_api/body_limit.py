"""Request bodies capped while they stream in: the one place a body over its limit becomes a 413.

A declared Content-Length over the limit is refused before anything is read; a body sent without
one (or with a false one) is refused at the chunk that crosses the limit, so an oversized body is
never held whole. Starlette's multipart parser closes the temporary files it opened when reading
the body fails and lets the error through unchanged (it only turns its own parse errors into 400s).

`LimitedBody` does the same in front of a mounted ASGI app (MCP at /v1/mcp) that reads the body
itself: it answers the 413 envelope at the limit, where the app's own cap would answer plain text.
"""

from __future__ import annotations

from collections import deque

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from batchin.errors import PayloadTooLarge

__all__ = ["LimitedBody", "check_declared_length", "limit_body", "read_limited"]

_BODY = "Request body"


def limit_body(
    request: Request, max_bytes: int, *, subject: str = _BODY, param: str | None = None
) -> Request:
    """`request` whose body raises PayloadTooLarge ("<subject> exceeds the limit of N bytes.")
    once more than `max_bytes` have been declared or have arrived."""
    check_declared_length(request, max_bytes, subject=subject, param=param)
    return Request(request.scope, _capped(request.receive, max_bytes, subject, param))


async def read_limited(request: Request, max_bytes: int) -> bytes:
    """`await limit_body(request, max_bytes).body()`, read from `receive` in one loop: no second
    Request, Headers object, receive wrapper or body stream generator (every JSON request's body,
    read before anything else, so from the request's own messages as the limited Request reads
    them). A disconnect raises ClientDisconnect, as Request.stream does."""
    for name, value in request.scope["headers"]:
        if name == b"content-length":
            declared = value.decode("latin-1")
            if declared.isdigit() and int(declared) > max_bytes:
                raise _too_large(max_bytes, _BODY, None)
            break  # the first one counts, as Headers.get reads it
    receive = request.receive
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            body = message.get("body", b"")
            seen += len(body)
            if seen > max_bytes:
                raise _too_large(max_bytes, _BODY, None)
            if body:
                chunks.append(body)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        elif kind == "http.disconnect":
            raise ClientDisconnect()


def check_declared_length(
    request: Request, max_bytes: int, *, subject: str = _BODY, param: str | None = None
) -> None:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes, subject, param)


def _capped(receive: Receive, max_bytes: int, subject: str, param: str | None) -> Receive:
    seen = 0

    async def capped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > max_bytes:
                raise _too_large(max_bytes, subject, param)
        return message

    return capped


def _too_large(max_bytes: int, subject: str, param: str | None) -> PayloadTooLarge:
    return PayloadTooLarge(f"{subject} exceeds the limit of {max_bytes} bytes.", param=param)


class LimitedBody:
    """An ASGI app whose request bodies are capped at `max_bytes`: a larger declared length is
    refused before reading, an undeclared one at the chunk that crosses the limit (the body read so
    far is then replayed to `app`, so it is held at most once, never past the limit)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            check_declared_length(Request(scope), self.max_bytes)
            received = await self._read(receive)
        except PayloadTooLarge as exc:
            await _send_error(send, exc)
            return

        async def replay() -> Message:
            return received.popleft() if received else await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> deque[Message]:
        messages: deque[Message] = deque()
        capped = _capped(receive, self.max_bytes, _BODY, None)
        while True:
            message = await capped()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                return messages


async def _send_error(send: Send, error: PayloadTooLarge) -> None:
    body = orjson.dumps(error.body())
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
