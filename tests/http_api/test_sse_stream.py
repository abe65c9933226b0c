"""The SSE response of inference streams (batchin/http_api/streaming.py) against sse-starlette's
own EventSourceResponse, driven over ASGI: the same bytes and headers, pings, and the stream ended
by the client's disconnect or the server's shutdown with the events' cleanup run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from sse_starlette import EventSourceResponse
from sse_starlette.sse import AppStatus
from starlette.types import Message

from batchin.http_api.streaming import _EventStream

SCOPE: dict[str, Any] = {"type": "http", "method": "POST", "path": "/", "headers": []}
EVENTS = [b'data: {"a":"\\u2028x"}\r\n\r\n', b"data: [DONE]\r\n\r\n"]


class Client:
    """An ASGI peer: collects what is sent; disconnects when told."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.gone = asyncio.Event()

    async def receive(self) -> Message:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


async def events(
    items: list[bytes], *, then_wait: asyncio.Event | None = None, closed: list[str]
) -> AsyncIterator[bytes]:
    try:
        for item in items:
            yield item
        if then_wait is not None:
            await then_wait.wait()
    finally:
        closed.append("closed")


# Our headers (built directly), one that sse-starlette sets too (its own way), a repeated name.
@pytest.mark.parametrize(
    "headers",
    [
        {"X-VaaS-Record-Id": "r1", "x-ratelimit-limit": "5"},
        {"Cache-Control": "public"},
        {"X-A": "1", "x-a": "2"},
        {},
    ],
)
async def test_the_same_bytes_and_headers_as_sse_starlette(headers: dict[str, str]) -> None:
    ours, theirs = Client(), Client()
    closed: list[str] = []
    await _EventStream(events(EVENTS, closed=closed), headers=headers, ping=15)(
        SCOPE, ours.receive, ours.send
    )
    reference = EventSourceResponse(events(EVENTS, closed=closed), headers=headers, ping=15)
    await reference(SCOPE, theirs.receive, theirs.send)
    assert ours.sent == theirs.sent
    assert ours.body() == b"".join(EVENTS)
    assert closed == ["closed", "closed"]


async def test_pings_keep_an_idle_stream_alive() -> None:
    client, closed, finish = Client(), [], asyncio.Event()
    response = _EventStream(events(EVENTS[:1], then_wait=finish, closed=closed), ping=0.05)
    call = asyncio.create_task(response(SCOPE, client.receive, client.send))
    await asyncio.sleep(0.18)
    finish.set()
    await call
    pings = [m for m in client.sent if m.get("body", b"").startswith(b": ping - ")]
    assert len(pings) >= 2
    assert client.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_a_disconnect_ends_the_stream_and_runs_its_cleanup() -> None:
    client, closed, never = Client(), [], asyncio.Event()
    response = _EventStream(events(EVENTS[:1], then_wait=never, closed=closed), ping=15)
    call = asyncio.create_task(response(SCOPE, client.receive, client.send))
    await asyncio.sleep(0.05)
    client.gone.set()
    await asyncio.wait_for(call, 5)  # returns normally: the request's task was not cancelled
    assert closed == ["closed"]
    assert client.body() == EVENTS[0]
    assert not call.cancelled()


async def test_the_servers_shutdown_ends_the_stream() -> None:
    client, closed, never = Client(), [], asyncio.Event()
    response = _EventStream(events(EVENTS[:1], then_wait=never, closed=closed), ping=15)
    call = asyncio.create_task(response(SCOPE, client.receive, client.send))
    await asyncio.sleep(0.05)
    AppStatus.should_exit = True  # what uvicorn's exit sets; sse-starlette's watcher polls it
    try:
        await asyncio.wait_for(call, 5)
    finally:
        AppStatus.should_exit = False
    assert closed == ["closed"]


async def test_a_batch_of_events_is_one_body_message() -> None:
    from types import SimpleNamespace

    from batchin.http_api.streaming import sse_response

    async def batches() -> AsyncIterator[list[Any]]:
        yield [b'{"a":1}', {"b": 2}]
        yield [b'{"c":3}']

    async def closed() -> None:
        return None

    client = Client()
    request: Any = SimpleNamespace(state=SimpleNamespace(request_id="r"))
    await sse_response(request, batches(), headers={}, on_close=closed)(SCOPE, client.receive, client.send)
    bodies = [(m["body"], m["more_body"]) for m in client.sent if m["type"] == "http.response.body"]
    assert bodies == [
        (b'data: {"a":1}\r\n\r\ndata: {"b":2}\r\n\r\n', True),
        (b'data: {"c":3}\r\n\r\n', True),
        (b"data: [DONE]\r\n\r\n", False),  # the end goes with the response's last message
    ]


async def test_an_error_in_the_stream_goes_out_with_done_in_the_last_message() -> None:
    from types import SimpleNamespace

    from batchin.errors import BatchInError
    from batchin.http_api.streaming import sse_response

    async def batches() -> AsyncIterator[list[Any]]:
        yield [b'{"a":1}']
        raise BatchInError("broke")

    closes: list[str] = []

    async def closed() -> None:
        closes.append("closed")

    client = Client()
    request: Any = SimpleNamespace(state=SimpleNamespace(request_id="r"))
    await sse_response(request, batches(), headers={}, on_close=closed)(SCOPE, client.receive, client.send)
    bodies = [(m["body"], m["more_body"]) for m in client.sent if m["type"] == "http.response.body"]
    error = b"data: " + orjson.dumps(BatchInError("broke").body()) + b"\r\n\r\n"
    assert bodies == [(b'data: {"a":1}\r\n\r\n', True), (error + b"data: [DONE]\r\n\r\n", False)]
    assert closes == ["closed"]


async def test_the_watch_a_route_hands_over_ends_the_stream_when_the_caller_leaves() -> None:
    from types import SimpleNamespace

    from batchin.http_api.streaming import DisconnectWatch, sse_response

    never, closes = asyncio.Event(), []

    async def batches() -> AsyncIterator[list[Any]]:
        yield [b'{"a":1}']
        await never.wait()

    async def closed() -> None:
        closes.append("closed")

    client = Client()
    watch = DisconnectWatch(client.receive)
    request: Any = SimpleNamespace(state=SimpleNamespace(request_id="r"))
    response = sse_response(request, batches(), headers={}, on_close=closed, watch=watch)
    call = asyncio.create_task(response(SCOPE, client.receive, client.send))
    await asyncio.sleep(0.05)
    client.gone.set()
    await asyncio.wait_for(call, 5)
    assert not call.cancelled()
    assert closes == ["closed"]
    assert client.body() == b'data: {"a":1}\r\n\r\n'
    await asyncio.sleep(0)
    assert watch.task.done()  # the one watcher of the call, ended with its response
