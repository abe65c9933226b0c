"""Request bodies capped while they stream in: the one place a body over its limit becomes a 413.

A declared Content-Length over the limit is refused before anything is read; a body sent without
one (or with a false one) is refused at the chunk that crosses the limit, so an oversized body is
never held whole. Starlette's multipart parser closes the temporary files it opened when reading
the body fails and lets the error through unchanged (it only turns its own parse errors into 400s).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Message, Receive

from batchin.errors import PayloadTooLarge

__all__ = ["check_declared_length", "limit_body"]

_BODY = "Request body"


def limit_body(
    request: Request, max_bytes: int, *, subject: str = _BODY, param: str | None = None
) -> Request:
    """`request` whose body raises PayloadTooLarge ("<subject> exceeds the limit of N bytes.")
    once more than `max_bytes` have been declared or have arrived."""
    check_declared_length(request, max_bytes, subject=subject, param=param)
    return Request(request.scope, _capped(request.receive, max_bytes, subject, param))


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
