"""A lean keep-alive HTTP/1.1 client for the remote runners' hot calls (chat, completions, their
streams, health checks): an asyncio Protocol per connection with httptools' C response parser,
one pool of connections per upstream origin (upstream_pool.py), one socket write per request.
This module is one connection: writing a request, parsing its response, reading a body or a
stream, the read timeout, and giving the connection back to its pool or closing it.

Why not aiohttp here: a proxied call's upstream request went through ~200 Python calls of
aiohttp (URL objects, multidicts, tracing hooks, the stream reader, its timers), 16 % of the
event loop's CPU per chat call. This client does what those calls need and nothing more: the
caller hands it the request head already built as bytes (see UpstreamClient), the body arrives
as the parser's own `bytes`, and a stream's reader takes whatever has arrived in one piece.

What an upstream may send and is handled: Content-Length, chunked (trailers ignored) and
read-until-close bodies; `Connection: close` and HTTP/1.0 (the connection is not reused); 1xx
interim responses (skipped); `Content-Encoding: gzip`/`deflate` (decoded, although we ask for
identity); TLS (`https://`, the system's trust store, the URL's host checked). Not handled: proxies
(the aiohttp session never used them either: `trust_env=False`), redirects, other encodings (an
unreadable answer).

Errors, by what they mean for a retry:
- `UpstreamConnectError`: no connection was made (refused, unresolvable, TLS handshake failed,
  connect timeout, no pooled connection free within the pool timeout): nothing was sent.
- `UpstreamBroken`: the connection failed after the request may have been sent (closed early,
  an unparseable answer); `TimeoutError`: no byte within the read timeout while waiting for one.
Their messages never name the upstream's address (they reach callers and the health reason).

A connection is reused only after its response was read to the end; `close()` (a caller that
went away, an error) aborts it, so the upstream sees the disconnect and stops generating.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import zlib
from typing import Protocol, cast

import httptools

__all__ = [
    "TRANSPORT_ERRORS",
    "ConnectionPool",
    "HttpConnection",
    "UpstreamBroken",
    "UpstreamConnectError",
    "UpstreamTooLarge",
    "os_reason",
]

# Stop reading a stream the caller is not keeping up with past this many buffered bytes.
_HIGH_WATER = 1 << 20
# Headers worth keeping (lower-case): the rest are parsed and dropped.
_KEPT_HEADERS = frozenset((b"content-encoding", b"content-length", b"transfer-encoding", b"retry-after"))


class UpstreamConnectError(Exception):
    """No connection: nothing reached the upstream, so another upstream may be tried."""


class UpstreamBroken(Exception):
    """The connection failed after the request may have been sent."""


# What a request on this client can raise besides the caller's own cancellation.
TRANSPORT_ERRORS = (UpstreamConnectError, UpstreamBroken, TimeoutError, OSError)


class ConnectionPool(Protocol):
    """What a connection needs of the pool it belongs to (upstream_pool.py)."""

    loop: asyncio.AbstractEventLoop
    read_timeout: float

    def put_back(self, connection: HttpConnection) -> None:
        """The connection is idle and reusable."""

    def forget(self, connection: HttpConnection) -> None:
        """The connection closed (by either side)."""


class HttpConnection(asyncio.Protocol):
    """One connection and the response being read on it (one request at a time)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._loop = pool.loop
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_data = 0.0
        self._paused = False
        self._counted = True  # in the pool's count of open connections until `_detach`
        self._busy = False  # a request is in flight (from `send` to `release`)
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.status = 0  # set when the response head is complete
        self.headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._buffered = 0
        self._complete = False
        self._keep_alive = False
        self._interim = False  # a 1xx response is being skipped
        self._decoder: zlib._Decompress | None = None
        self._error: BaseException | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A socket transport (uvloop's is one without subclassing asyncio.Transport).
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self._busy:  # bytes on an idle connection (a 408 before closing it): not reusable
            self.close()
            return
        self._last_data = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            cause = exc.__context__  # a callback's own error (an unsupported encoding)
            if not isinstance(cause, UpstreamBroken):
                cause = UpstreamBroken(f"unreadable HTTP answer ({type(exc).__name__})")
            self._fail(cause)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._detach()
        if self.status and not self._complete and self._until_close():
            self.on_message_complete()  # a body delimited by the connection's end
        elif not self._complete:
            self._fail(UpstreamBroken("the upstream closed the connection"))

    # -- httptools callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.headers = {}

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in _KEPT_HEADERS and not self.status:  # not a chunked body's trailers
            self.headers[name] = value

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # 100 Continue, 103 Early Hints: the answer follows
            self._interim = True
            return
        encoding = self.headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding in (b"gzip", b"x-gzip", b"deflate"):
            self._decoder = zlib.decompressobj(47)  # gzip or zlib, told apart by the header bytes
        elif encoding != b"identity":
            raise UpstreamBroken(f"unsupported content-encoding {encoding.decode('latin-1')!r}")
        self.status = status
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self._decoder is not None:
            try:
                body = self._decoder.decompress(body)
            except zlib.error as exc:
                raise UpstreamBroken("undecodable compressed body") from exc
            if not body:  # the decoder holds it back for now (b"" means the end to a reader)
                return
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self._decoder is not None and (rest := self._decoder.flush()):
            self._body.append(rest)
        # Asked now: once the callback returns, llhttp resets the message's flags.
        self._keep_alive = self._parser.should_keep_alive()
        self._complete = True
        self._wake()

    # -- the request ------------------------------------------------------------------------

    async def send(self, request: bytes) -> None:
        """Write the whole request, then wait for the response head (`status`, `headers`)."""
        self._reset()
        self._busy = True
        self._last_data = self._loop.time()
        if self._timer is None:  # one timer for the connection's life, not one per request
            self._timer = self._loop.call_at(self._last_data + self._pool.read_timeout, self._check_read)
        if self._transport is None or self.closed:
            raise UpstreamBroken("the upstream closed the connection")
        self._transport.write(request)
        while not self.status:
            await self._wait()

    async def read_chunk(self) -> bytes:
        """Whatever body bytes have arrived (waiting for some); b"" once the body is complete."""
        while not self._body:
            if self._complete:
                return b""
            # `_wait` inline: a stream waits here once per read, and each frame of the wait is
            # suspended and resumed with it.
            if self._error is not None:
                raise self._error
            self._last_data = self._loop.time()
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
            if self._error is not None:
                raise self._error
        body = self._body
        chunk = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        self._buffered = 0
        if self._paused:
            self._resume()
        return chunk

    async def read_all(self, limit: int) -> bytes:
        """The whole body; `UpstreamTooLarge` past `limit` bytes."""
        length = self.headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise UpstreamTooLarge(limit)
        parts: list[bytes] = []
        size = 0
        while True:
            chunk = await self.read_chunk()
            if not chunk:
                return b"".join(parts)
            size += len(chunk)
            if size > limit:
                raise UpstreamTooLarge(limit)
            parts.append(chunk)

    def release(self) -> None:
        """Done with the response: back to the pool if it was read to the end on a connection
        that stays open, otherwise closed."""
        self._busy = False
        if self._complete and self._keep_alive and not self._body and not self.closed:
            self._pool.put_back(self)
        else:
            self.close()

    def close(self) -> None:
        """Abort the connection (idempotent): the upstream sees the disconnect at once."""
        self._stop_timer()
        if not self.closed:
            self.closed = True
            if self._transport is not None:
                self._transport.abort()
        self._detach()

    # -- internals ----------------------------------------------------------------------------

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        self._last_data = self._loop.time()  # the read timeout counts from the start of a wait
        waiter = self._waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None
        if self._error is not None:
            raise self._error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        self._stop_timer()
        if self._error is None:
            self._error = error
        if self._transport is not None and not self.closed:
            self.closed = True
            self._transport.abort()
        self._detach()
        self._wake()

    def _detach(self) -> None:
        if self._counted:
            self._counted = False
            self._pool.forget(self)

    def _check_read(self) -> None:
        """The read timeout: a timer that fires at most once per `read_timeout`, not per byte."""
        self._timer = None
        if self.closed:
            return
        deadline = self._last_data + self._pool.read_timeout
        if self._waiter is None or self._loop.time() < deadline:
            # Data came in meanwhile, or nobody is waiting (the caller is busy, or the connection
            # is idle in the pool): look again later.
            if self._waiter is None:
                deadline = self._loop.time() + self._pool.read_timeout
            self._timer = self._loop.call_at(deadline, self._check_read)
            return
        self._fail(TimeoutError(f"no data from the upstream in {self._pool.read_timeout:g} s"))

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _resume(self) -> None:
        self._paused = False
        if self._transport is not None and not self.closed:
            self._transport.resume_reading()

    def _until_close(self) -> bool:
        """The body ends when the connection does: neither a length nor chunked encoding."""
        headers = self.headers
        return b"content-length" not in headers and b"chunked" not in headers.get(b"transfer-encoding", b"")


class UpstreamTooLarge(UpstreamBroken):
    """A body over the caller's limit (the connection is not reusable: close it)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"answer over {limit} bytes")
        self.limit = limit


def os_reason(exc: OSError) -> str:
    """An OSError's reason without the peer's address: asyncio puts it into strerror ("Connect
    call failed ('10.0.0.7', 8000)"); the errno's standard text says the same without it.
    Resolver errors (negative EAI_* codes) carry a plain text ("Name or service not known"); a
    TLS error its reason (its errno is OpenSSL's, not the system's)."""
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or type(exc).__name__}"
    if exc.errno and exc.errno > 0:
        return os.strerror(exc.errno)
    return exc.strerror or type(exc).__name__
