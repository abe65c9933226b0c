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
from typing import Any

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
from batchin.http_api.disconnect import ClientDisconnected, DisconnectWatch, until_disconnect
from batchin.http_api.middleware import BODY_SEND

__all__ = [
    "CLIENT_CLOSED_REQUEST",
    "ClientDisconnected",
    "ClosingStream",
    "DisconnectWatch",
    "sse_response",
    "until_disconnect",
]

log = logging.getLogger("batchin.http")


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
        self, content: AsyncIterator[Any], *, headers: Mapping[str, str] | None = None, ping: float
    ) -> None:
        # What this class uses of sse-starlette's __init__, which costs ~25 µs a stream (an ABC
        # isinstance check, an anyio Lock, the headers through MutableHeaders): the same raw
        # headers (test_sse_stream.py compares them), built directly when no given header name
        # meets one it sets. The rest of its state only its own __call__ needs (see there).
        self._given = (content, headers, ping)
        self._watch: DisconnectWatch | None = None  # a request's watch, handed over by sse_response
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
            if self._watch is not None:
                self._watch.cancel()
            content, headers, interval = self._given
            EventSourceResponse.__init__(self, content, headers=headers, ping=interval)
            await super().__call__(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        # Body messages skip the wrappers that only look at the start (see middleware.BODY_SEND).
        send_body: Send = scope.get("state", {}).get(BODY_SEND, send)

        sender: asyncio.Task[None] | None = None
        stopped = False  # ended by a disconnect or the shutdown, not by the events running out

        def stop() -> None:
            nonlocal stopped
            if not stopped and self.active:
                stopped, self.active = True, False
                if sender is not None:
                    sender.cancel()

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
        watch = self._watch
        if watch is None:
            watch = DisconnectWatch(receive)
        watch.then(stop)
        if watch.gone:  # the caller left between its call's start and this response
            stop()
        timer = [loop.call_later(self.ping_interval, ping_due)]
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            if AppStatus.should_exit:
                stop()
            if not stopped:
                sender = loop.create_task(self._send_events(send_body))
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
            watch.cancel()
            for task in pings:
                task.cancel()
            await self._cleanup()
        if self.background is not None:
            await self.background()

    async def _cleanup(self) -> None:
        aclose = getattr(self.body_iterator, "aclose", None)
        if aclose is not None:  # runs the generator's cleanup if it was left mid-way
            await aclose()

    async def _send_events(self, send_body: Send) -> None:
        async for chunk in self.body_iterator:
            await send_body({"type": "http.response.body", "body": chunk, "more_body": True})
        self.active = False
        await send_body({"type": "http.response.body", "body": b"", "more_body": False})


class _BatchStream(_EventStream):
    """An inference stream: batches of events from core (what was ready together), each batch
    framed with one join and sent in one write, by the sending task itself (no generator layer
    between the batches and the writes). The end — `[DONE]`, after an error its event — goes out
    with the response's last message, one write with the chunked body's terminator."""

    def __init__(
        self,
        request: Request,
        batches: AsyncIterator[Sequence[bytes | BaseModel | dict[str, Any]]],
        *,
        headers: Mapping[str, str] | None,
        on_close: Callable[[], Awaitable[None]],
        watch: DisconnectWatch | None,
    ) -> None:
        # No send_timeout: a stalled reader is already cut off from the engine by its generation's
        # bounded buffer (core/serving/generation.py), and a timeout costs a cancel scope per event.
        super().__init__(batches, headers=headers, ping=_PING_SECONDS)
        self._request, self._on_close, self._closed = request, on_close, False
        self._watch = watch

    async def _send_events(self, send_body: Send) -> None:
        batches = self.body_iterator
        end = _DONE
        try:
            while True:
                try:
                    batch = await batches.__anext__()  # type: ignore[attr-defined]
                except StopAsyncIteration:
                    break
                except BatchInError as exc:
                    end = _error_event(exc) + _DONE
                    break
                except ClientGone:
                    # A reader that stalled past the timeout was dropped: tell it, if it ever reads again.
                    gone = ServiceUnavailable("The stream was dropped: the reader fell too far behind.")
                    end = _error_event(gone) + _DONE
                    break
                except Exception:
                    log.exception("stream failed (request %s)", self._request.state.request_id)
                    end = _error_event(BatchInError("The stream failed on the server.")) + _DONE
                    break
                await send_body({"type": "http.response.body", "body": _events(batch), "more_body": True})
        finally:
            await self._close()
        self.active = False
        await send_body({"type": "http.response.body", "body": end, "more_body": False})

    async def _close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._on_close()

    async def _cleanup(self) -> None:
        await super()._cleanup()
        await self._close()  # a stream stopped before its sender ran


def sse_response(
    request: Request,
    batches: AsyncIterator[Sequence[bytes | BaseModel | dict[str, Any]]],
    *,
    headers: dict[str, str],
    on_close: Callable[[], Awaitable[None]],
    watch: DisconnectWatch | None = None,
) -> EventSourceResponse:
    """`batches`: lists of events, each list sent in one write (what arrived together goes out
    together: one send and one pass through these layers per wake of the stream, not per event).
    `watch`: the request's disconnect watch, if the route made one (see disconnect.py); the
    response ends it."""
    return _BatchStream(request, batches, headers=headers, on_close=on_close, watch=watch)


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
