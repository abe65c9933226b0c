"""The pools of the lean upstream client (upstream_http.py is one connection): one pool per
upstream origin, bounded by the model's `max_concurrency`, keeping idle keep-alive connections
most recent first, and the `Endpoint` a URL resolves to once (its pool, the request line's target
and the Host header), so a call builds no URL object.

    client = HttpClient(limit=64, connect_timeout=5, pool_timeout=10, read_timeout=120,
                        keepalive_timeout=4)
    connection = await client.endpoint("http://10.0.0.7:8000/v1/chat/completions").request(data)
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Callable
from urllib.parse import quote, urlsplit

from batchin.models.upstream_http import HttpConnection, UpstreamBroken, UpstreamConnectError, os_reason

__all__ = ["Endpoint", "HttpClient"]


class _Pool:
    """The connections to one origin: idle ones (most recent first), and a bound on how many are
    open at once (callers past it wait up to `pool_timeout` for one to come back)."""

    def __init__(self, client: HttpClient, host: str, port: int, tls: ssl.SSLContext | None) -> None:
        self.loop = asyncio.get_running_loop()
        self.read_timeout = client.read_timeout
        self._client = client
        self._host, self._port, self._tls = host, port, tls
        self._idle: list[HttpConnection] = []
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> HttpConnection:
        client = self._client
        idle = self._idle
        while True:
            now = self.loop.time()
            while idle:
                connection = idle.pop()
                if not connection.closed and now - connection.idle_since < client.keepalive_timeout:
                    return connection
                connection.close()  # past the keep-alive: the upstream may be closing it right now
            if self._open < client.limit:
                return await self._connect()
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(client.pool_timeout):
                    await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():
                    self._hand_on()  # woken but leaving: the next waiter takes the turn
                elif waiter in self._waiters:
                    self._waiters.remove(waiter)
                if isinstance(exc, TimeoutError):
                    raise UpstreamConnectError("no pooled connection free in time") from None
                raise

    async def _connect(self) -> HttpConnection:
        self._open += 1
        connection = HttpConnection(self)
        try:
            async with asyncio.timeout(self._client.connect_timeout):
                await self.loop.create_connection(
                    lambda: connection,
                    self._host,
                    self._port,
                    ssl=self._tls,
                    server_hostname=self._host if self._tls is not None else None,
                )  # no happy_eyeballs_delay: uvloop (what `serve` runs) does not take it
        except BaseException as exc:
            connection.close()
            if isinstance(exc, TimeoutError):
                raise UpstreamConnectError("connect timed out") from exc
            if isinstance(exc, OSError):  # ssl.SSLError and the resolver's errors are OSErrors
                raise UpstreamConnectError(os_reason(exc)) from exc
            raise
        return connection

    def put_back(self, connection: HttpConnection) -> None:
        connection.idle_since = self.loop.time()
        self._idle.append(connection)
        self._hand_on()

    def forget(self, connection: HttpConnection) -> None:
        """A connection closed (by either side)."""
        if connection in self._idle:
            self._idle.remove(connection)
        self._open -= 1
        self._hand_on()

    def _hand_on(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for connection in list(self._idle):
            connection.close()


class Endpoint:
    """One URL of an upstream: its pool and the request line's target and Host header."""

    __slots__ = ("host_header", "pool", "target")

    def __init__(self, pool: _Pool, target: bytes, host_header: bytes) -> None:
        self.pool, self.target, self.host_header = pool, target, host_header

    async def request(self, data: bytes) -> HttpConnection:
        """Send a whole request (head and body, built by the caller) in one write; the connection
        with the response head read. On any failure or cancellation the connection is closed,
        never reused."""
        connection = await self.pool.acquire()
        try:
            await connection.send(data)
        except BaseException as exc:
            connection.close()
            if isinstance(exc, OSError):
                raise UpstreamBroken(os_reason(exc)) from exc
            raise
        return connection


class HttpClient:
    """Pools per origin, made on first use (inside the running loop); `close()` drops them."""

    def __init__(
        self,
        *,
        limit: int,
        connect_timeout: float,
        pool_timeout: float,
        read_timeout: float,
        keepalive_timeout: float,
        tls: Callable[[], ssl.SSLContext] = ssl.create_default_context,
    ) -> None:
        self.limit = limit
        self.connect_timeout = connect_timeout
        self.pool_timeout = pool_timeout
        self.read_timeout = read_timeout
        self.keepalive_timeout = keepalive_timeout
        self._make_tls = tls
        self._tls: ssl.SSLContext | None = None
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._endpoints: dict[str, Endpoint] = {}

    def endpoint(self, url: str) -> Endpoint:
        """The endpoint of an absolute http(s) URL (cached: parsed once per URL)."""
        endpoint = self._endpoints.get(url)
        if endpoint is None:
            endpoint = self._endpoints[url] = self._parse(url)
        return endpoint

    def _parse(self, url: str) -> Endpoint:
        try:
            parts = urlsplit(url)
            scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
            name = f"[{host}]" if host and ":" in host else (host or "").encode("idna").decode("ascii")
        except (ValueError, UnicodeError):  # a port out of range, a host IDNA cannot encode
            raise UpstreamConnectError("not a valid URL") from None
        if scheme not in ("http", "https") or not host:
            raise UpstreamConnectError(f"not an http(s) URL ({scheme or 'no scheme'})")
        default_port = 443 if scheme == "https" else 80
        port = port or default_port
        key = (scheme, host, port)
        pool = self._pools.get(key)
        if pool is None:
            tls = None
            if scheme == "https":
                if self._tls is None:
                    self._tls = self._make_tls()
                tls = self._tls
            pool = self._pools[key] = _Pool(self, host, port, tls)
        host_header = name if port == default_port else f"{name}:{port}"
        target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
        if parts.query:
            target += "?" + parts.query
        return Endpoint(pool, target.encode("ascii"), host_header.encode("ascii"))

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._endpoints.clear()
