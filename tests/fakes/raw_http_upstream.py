"""A fake upstream that answers with scripted raw HTTP bytes: for the HTTP edge cases a real
server produces but uvicorn never does (chunked trailers, gzip, `Connection: close`, bodies that
end with the connection, 1xx interim answers, stalls), and over TLS.

    upstream = RawUpstream(tls=cert_and_key)              # background thread, ephemeral port
    upstream.answer = lambda request: [b"HTTP/1.1 200 OK\\r\\n...", (0.1, b"more")]
    ... upstream.url (ends in /v1), upstream.requests, upstream.connections ...
    upstream.stop()

An answer is a list of parts written in order: bytes, or (seconds, bytes) to pause first; the
special part CLOSE ends the connection there. After the parts the connection stays open for the
next request (keep-alive) unless the answer closed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["CLOSE", "RawRequest", "RawUpstream", "chunked", "sse_events"]

CLOSE = b"<close>"

Part = bytes | tuple[float, bytes]


@dataclass
class RawRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    connection: int  # which accepted connection (0, 1, ...) it came on


@dataclass
class _State:
    requests: list[RawRequest] = field(default_factory=list)
    connections: int = 0
    disconnects_before_answer: int = 0  # the client went away while its answer was pending


def sse_events(*texts: str, usage: tuple[int, int] = (3, 2)) -> bytes:
    """A chat stream's events: one content chunk per text, a finish chunk, usage, [DONE]."""
    out = b""
    for text in texts:
        out += b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n' % text.encode()
    out += b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    out += b'data: {"choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d}}\n\n' % usage
    return out + b"data: [DONE]\n\n"


def chunked(body: bytes, size: int, trailers: bytes = b"") -> bytes:
    """`body` in chunked transfer encoding, `size` bytes a chunk, with optional trailer lines."""
    out = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)
    )
    return out + b"0\r\n" + trailers + b"\r\n"


def gzipped(body: bytes) -> bytes:
    return gzip.compress(body)


class RawUpstream:
    def __init__(self, *, tls: tuple[str, str] | None = None) -> None:
        """`tls`: (certificate file, key file) to serve https."""
        self.answer: Callable[[RawRequest], list[Part]] = lambda request: [
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
        ]
        self.state = _State()
        self._tls: ssl.SSLContext | None = None
        if tls is not None:
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(*tls)
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="raw-upstream", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("raw upstream did not start")
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[RawRequest]:
        return self.state.requests

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._tls)
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._started.set()
        self._loop.run_forever()
        tasks = asyncio.all_tasks(self._loop)  # connections still open: end their handlers
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.state.connections
        self.state.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                request = _parse(head, number)
                request.body = await reader.readexactly(int(request.headers.get("content-length", "0")))
                self.state.requests.append(request)
                if not await self._answer(request, reader, writer):
                    return
        finally:
            writer.close()

    async def _answer(
        self, request: RawRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Write the scripted answer; False when the connection is to end."""
        for part in self.answer(request):
            if isinstance(part, tuple):
                pause, part = part
                gone = asyncio.ensure_future(reader.read(1))  # b"": the client closed
                done, _ = await asyncio.wait({gone}, timeout=pause)
                if done:
                    self.state.disconnects_before_answer += 1
                    return False
                gone.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await gone  # the reader is free for the next request only once it has ended
            if part == CLOSE:
                return False
            writer.write(part)
            await writer.drain()
        return True

    def stop(self) -> None:
        async def shutdown() -> None:
            self._server.close()
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        self._thread.join(timeout=10)


def _parse(head: bytes, connection: int) -> RawRequest:
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return RawRequest(method, path, headers, b"", connection)
