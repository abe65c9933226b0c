"""Server-sent events and disconnect handling for inference routes.

Streams: JSON strings as `data:` events, then `data: [DONE]`. An error after the headers were sent
becomes one `data: {"error": …}` event followed by `[DONE]` (the openai SDK raises APIError on it).
Non-streaming calls race the work against the client's disconnect, so a caller that goes away
cancels the engine's work and pays only for what was made.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from batchin.core.billing.metering import ClientGone
from batchin.core.serving.generation import BufferedStream
from batchin.errors import BatchInError, ServiceUnavailable

log = logging.getLogger("batchin.http")

T = TypeVar("T")

_PING_SECONDS = 15
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a caller that went away (sent to nobody)


def _encode(item: BaseModel | dict[str, Any]) -> str:
    if isinstance(item, BaseModel):
        return item.model_dump_json(exclude_none=False)
    return orjson.dumps(item).decode()


def sse_response(
    request: Request,
    items: AsyncIterator[BaseModel | dict[str, Any]],
    *,
    headers: dict[str, str],
    on_close: Callable[[], Awaitable[None]],
) -> EventSourceResponse:
    async def events() -> AsyncIterator[str]:
        try:
            async for item in items:
                yield _encode(item)
        except BatchInError as exc:
            yield orjson.dumps(exc.body()).decode()
        except ClientGone:
            # A reader that stalled past the timeout was dropped: tell it, if it ever reads again.
            yield orjson.dumps(
                ServiceUnavailable("The stream was dropped: the reader fell too far behind.").body()
            ).decode()
        except Exception:
            log.exception("stream failed (request %s)", request.state.request_id)
            yield orjson.dumps(BatchInError("The stream failed on the server.").body()).decode()
        finally:
            await on_close()
        yield "[DONE]"

    # No send_timeout: a stalled reader is already cut off from the engine by its generation's
    # bounded buffer (core/serving/generation.py), and a timeout here costs a cancel scope per event.
    return EventSourceResponse(
        events(),
        headers=headers,
        ping=_PING_SECONDS,
    )


class ClosingStream(StreamingResponse):
    """A byte stream from a producer task (core's BufferedStream): whatever ends the response — the
    last chunk, a client that disconnects while a chunk is being sent, an error — stops the
    producer, so its call settles (a caller that left pays for what it was sent)."""

    def __init__(self, stream: BufferedStream[bytes], *, media_type: str, headers: dict[str, str]) -> None:
        super().__init__(stream, media_type=media_type, headers=headers)
        self._stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._stream.aclose()


class ClientDisconnected(Exception):
    """The caller went away before the response was ready; its work has been cancelled."""


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run `work`; if the client disconnects first, cancel it and raise ClientDisconnected (a route
    may let it go: the error handlers answer it with a bodiless 499).

    Not CancelledError: this task was not cancelled, and the server would log that as a crash of
    the ASGI application on every disconnect."""
    task: asyncio.Future[T] = asyncio.ensure_future(work)

    async def watch() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    watcher = asyncio.ensure_future(watch())
    try:
        pending: set[asyncio.Future[Any]] = {task, watcher}
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.wait({task})
        raise ClientDisconnected
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
