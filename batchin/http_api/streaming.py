"""Server-sent events and disconnect handling for inference routes.

Streams: JSON strings as `data:` events, then `data: [DONE]`. An error after the headers were sent
becomes one `data: {"error": …}` event followed by `[DONE]` (the openai SDK raises APIError on it).
Non-streaming calls race the work against the client's disconnect, so a caller that goes away
cancels the engine's work and pays only for what was made.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.event import ensure_bytes
from sse_starlette.sse import AppStatus, _ensure_watcher_started_on_this_loop, _get_shutdown_state
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from batchin.core.billing.metering import ClientGone
from batchin.core.serving.generation import BufferedStream
from batchin.errors import BatchInError, ServiceUnavailable
from batchin.http_api.middleware import BODY_SEND

log = logging.getLogger("batchin.http")

T = TypeVar("T")

_PING_SECONDS = 15
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a caller that went away (sent to nobody)


# One event as it goes on the wire, built once: what sse-starlette's ServerSentEvent makes of a
# `data` string ("data: …" per line, "\r\n" separators, a blank line), without building the event
# object, splitting lines and re-encoding per token. JSON from orjson or pydantic never holds a raw
# line break (they are escaped inside strings), so the data is always one line.
_DATA, _END = b"data: ", b"\r\n\r\n"
_DONE = _DATA + b"[DONE]" + _END
_BETWEEN = _END + _DATA


def _data(item: bytes | BaseModel | dict[str, Any]) -> bytes:
    """An event's data. `bytes`: JSON already serialised (the per-token chunks of core's TokenChunks)."""
    if type(item) is bytes:
        return item
    if isinstance(item, BaseModel):
        return item.model_dump_json(exclude_none=False).encode()
    return orjson.dumps(item)


def _events(batch: Sequence[bytes | BaseModel | dict[str, Any]]) -> bytes:
    """The events of one batch (core's chunks of the deltas that were ready together), for one
    write: "data: " before each, a blank line after each."""
    if len(batch) == 1:  # one event per wake: an idle stream's every token
        item = batch[0]
        return _DATA + (item if type(item) is bytes else _data(item)) + _END
    return _DATA + _BETWEEN.join([item if type(item) is bytes else _data(item) for item in batch]) + _END


def _error_event(error: BatchInError) -> bytes:
    return _events([error.body()])


class _ShutdownStop:
    """What sse-starlette's shutdown broadcast sets (it calls `set()` on every event registered in
    its per-loop shutdown state when the server starts exiting): here, the end of one stream."""

    __slots__ = ("set",)

    def __init__(self, stop: Callable[[], None]) -> None:
        self.set = stop


# The headers sse-starlette's EventSourceResponse adds after the given ones, in its order.
_SSE_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"connection", b"keep-alive"),
    (b"x-accel-buffering", b"no"),
    (b"content-type", b"text/event-stream; charset=utf-8"),
]
_SSE_NAMES = {name for name, _ in _SSE_HEADERS} | {b"content-length"}


class _EventStream(EventSourceResponse):
    """sse-starlette's response (its headers, pings every 15 s, the stream ended by the client's
    disconnect or the server's shutdown) run on plain asyncio: the events are sent from a task of
    their own, one task watches for the disconnect, a timer sends the pings and the shutdown
    broadcast stops the stream directly. sse-starlette itself runs an anyio task group of four tasks
    per stream (and formats a task's repr when it cancels them), the larger part of a stream's
    fixed cost here; with no send timeout it also opened a cancel scope per event.

    Why a task for the events: the request's own task runs about a dozen coroutine frames deep
    (the server, Starlette's middleware and routing, our endpoint), and every wait for the next
    event suspends and resumes all of them; the sending task is two frames deep. The request's
    task waits for it once. Stopping the stream cancels that task, never the request's."""

    def __init__(
        self, content: AsyncIterator[bytes], *, headers: Mapping[str, str] | None = None, ping: float
    ) -> None:
        # What this class uses of sse-starlette's __init__, which costs ~25 µs a stream (an ABC
        # isinstance check, an anyio Lock, the headers through MutableHeaders): the same raw
        # headers (test_sse_stream.py compares them), built directly when no given header name
        # meets one it sets. The rest of its state only its own __call__ needs (see there).
        self._given = (content, headers, ping)
        raw = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in (headers or {}).items()
        ]
        names = {name for name, _ in raw}
        if len(names) < len(raw) or not names.isdisjoint(_SSE_NAMES):
            super().__init__(content, headers=headers, ping=ping)
            return
        self.body_iterator = content
        self.status_code, self.background, self.sep = 200, None, self.DEFAULT_SEPARATOR
        self.media_type = "text/event-stream"
        self._ping_interval = ping
        self.active = True
        self.raw_headers = [*raw, *_SSE_HEADERS]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if asyncio.current_task() is None:  # not under asyncio: sse-starlette's own way
            content, headers, interval = self._given
            EventSourceResponse.__init__(self, content, headers=headers, ping=interval)
            await super().__call__(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        # Body messages skip the wrappers that only look at the start (see middleware.BODY_SEND).
        send_body: Send = scope.get("state", {}).get(BODY_SEND, send)

        async def send_events() -> None:
            async for chunk in self.body_iterator:
                await send_body({"type": "http.response.body", "body": chunk, "more_body": True})
            self.active = False
            await send_body({"type": "http.response.body", "body": b"", "more_body": False})

        sender: asyncio.Task[None] | None = None
        stopped = False  # ended by a disconnect or the shutdown, not by the events running out

        def stop() -> None:
            nonlocal stopped
            if not stopped and self.active:
                stopped, self.active = True, False
                if sender is not None:
                    sender.cancel()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            stop()

        pings: list[asyncio.Task[None]] = []

        async def ping() -> None:
            if self.active:
                comment = ServerSentEvent(comment=f"ping - {datetime.now(UTC)}", sep=self.sep)
                body = ensure_bytes(comment, self.sep)
                await send({"type": "http.response.body", "body": body, "more_body": True})

        def ping_due() -> None:
            pings[:] = [t for t in pings if not t.done()]
            pings.append(loop.create_task(ping()))
            timer[0] = loop.call_later(self.ping_interval, ping_due)

        shutdown = _get_shutdown_state()
        on_shutdown = _ShutdownStop(stop)
        shutdown.events.add(on_shutdown)  # type: ignore[arg-type]  # only `set()` is called
        _ensure_watcher_started_on_this_loop()
        watcher = loop.create_task(watch())
        timer = [loop.call_later(self.ping_interval, ping_due)]
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            if AppStatus.should_exit:
                stop()
            if not stopped:
                sender = loop.create_task(send_events())
                await sender
        except asyncio.CancelledError:
            # The sender cancelled by our own stop: the response simply ends. A cancel of this task
            # (it reaches the sender through the await) stays a cancel.
            current = asyncio.current_task()
            if not (stopped and sender is not None and sender.cancelled()) or (
                current and current.cancelling()
            ):
                raise
        finally:
            self.active = False
            shutdown.events.discard(on_shutdown)  # type: ignore[arg-type,unused-ignore]
            timer[0].cancel()
            watcher.cancel()
            for task in pings:
                task.cancel()
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:  # runs the generator's cleanup if it was left mid-way
                await aclose()
        if self.background is not None:
            await self.background()


def sse_response(
    request: Request,
    batches: AsyncIterator[Sequence[bytes | BaseModel | dict[str, Any]]],
    *,
    headers: dict[str, str],
    on_close: Callable[[], Awaitable[None]],
) -> EventSourceResponse:
    """`batches`: lists of events, each list sent in one write (what arrived together goes out
    together: one send and one pass through these layers per wake of the stream, not per event)."""

    async def events() -> AsyncIterator[bytes]:
        try:
            async for batch in batches:
                yield _events(batch)
        except BatchInError as exc:
            yield _error_event(exc)
        except ClientGone:
            # A reader that stalled past the timeout was dropped: tell it, if it ever reads again.
            yield _error_event(ServiceUnavailable("The stream was dropped: the reader fell too far behind."))
        except Exception:
            log.exception("stream failed (request %s)", request.state.request_id)
            yield _error_event(BatchInError("The stream failed on the server."))
        finally:
            await on_close()
        yield _DONE

    # No send_timeout: a stalled reader is already cut off from the engine by its generation's
    # bounded buffer (core/serving/generation.py), and a timeout here costs a cancel scope per event.
    return _EventStream(
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
    the ASGI application on every disconnect.

    `work` runs in this task and one watcher task cancels this task when the caller leaves: a call
    pays one task and no `asyncio.wait`. Why that cancel always lands inside `work`, so no cancel is
    left pending for the caller's next await (Python 3.11's `uncancel()` would not clear one): the
    watcher runs only while this task is suspended, and between the watcher's start and the
    `finally` below this task suspends nowhere but inside `await work`; the cancel is thrown at the
    point where it resumes (if its awaited future was already done, the cancel waits for that
    resumption, still inside `work`). Once `work` has returned, `finally` cancels the watcher before
    this task could suspend again, and a watcher whose wait already ended is then cancelled where
    it resumes, before it can cancel anything. tests/http_api/test_until_disconnect.py races the
    two in both orders."""
    current = asyncio.current_task()
    if current is None:  # not in a task: nothing the watcher could cancel
        return await work
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await request.receive())["type"] != "http.disconnect":
            pass
        gone = True
        current.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        result = await work
    except BaseException:
        # Once our watcher has cancelled this task, what `work` ended with (the cancel, or an error
        # while it stopped) means the caller left. A cancel from elsewhere too (server shutdown)
        # stays a cancel.
        if gone and current.uncancel() == 0:
            raise ClientDisconnected from None
        raise
    finally:
        watcher.cancel()
    if gone:  # `work` swallowed the cancel and finished anyway: its answer stands
        current.uncancel()
    return result
