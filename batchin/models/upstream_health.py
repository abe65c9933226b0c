"""The upstreams of one remote route: which are healthy, and in what order to try them.

Health comes from two sources: a periodic check (GET on each upstream, started by `start()`) and the
requests themselves (a connect failure, a 5xx or a broken stream marks that upstream unhealthy
until a later check or request succeeds). Before the first check every upstream counts as
healthy, so a runner serves as soon as it is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin

import aiohttp
from yarl import URL

from batchin.models.base import RunnerHealth
from batchin.models.upstream_http import TRANSPORT_ERRORS, os_reason

log = logging.getLogger("batchin.models.remote")


@dataclass(slots=True)
class Upstream:
    base_url: str  # e.g. http://10.0.0.7:8000/v1 (what an OpenAI SDK takes as base_url)
    healthy: bool = True
    last_error: str | None = None
    # Parsed once per path: building a URL from a string costs more than the rest of the request.
    _urls: dict[str, URL] = field(default_factory=dict, repr=False, compare=False)

    def endpoint(self, path: str) -> URL:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self.base_url.rstrip("/") + path)
        return url


class UpstreamPool:
    """Round-robin over the healthy upstreams of one route, with an optional background checker.

    `check_path` is resolved against the base URL by RFC 3986 rules: "models" gives
    `{base}/models` (the OpenAI-compatible listing every engine serves), "/health" gives the
    server root's `/health` (vLLM, SGLang, TGI). `get(url)` makes one check's request and gives
    the answer's status (the runner's client: its pools hold a connection per upstream above the
    stream slots for them); the pool bounds the whole check by `check_timeout`.
    """

    def __init__(
        self,
        base_urls: tuple[str, ...],
        get: Callable[[str], Awaitable[int]],
        *,
        check_path: str,
        check_interval: float,
        check_timeout: float,
    ) -> None:
        self.upstreams = [Upstream(url) for url in base_urls]
        self._get = get
        self._check_path = check_path
        self._check_interval = check_interval
        self._check_timeout = check_timeout
        self._cursor = itertools.count()
        self._task: asyncio.Task[None] | None = None

    def candidates(self) -> list[Upstream]:
        """The order to try upstreams for one request: a rotating start spreads load, unhealthy
        ones are skipped. When none is healthy all are tried as a last resort: the marks may be
        stale (a refused connect costs little), and it lets a route recover without a checker."""
        if len(self.upstreams) == 1:  # the usual route: nothing to rotate or skip
            return self.upstreams
        start = next(self._cursor) % len(self.upstreams)
        rotated = self.upstreams[start:] + self.upstreams[:start]
        return [u for u in rotated if u.healthy] or rotated

    def mark_failed(self, upstream: Upstream, reason: str) -> None:
        if upstream.healthy:
            log.warning("upstream %s marked unhealthy: %s", upstream.base_url, reason)
        upstream.healthy = False
        upstream.last_error = reason

    def mark_ok(self, upstream: Upstream) -> None:
        if not upstream.healthy:
            log.info("upstream %s is healthy again", upstream.base_url)
        upstream.healthy = True
        upstream.last_error = None

    def health(self) -> RunnerHealth:
        total = len(self.upstreams)
        healthy = sum(1 for u in self.upstreams if u.healthy)
        extra: dict[str, object] = {"upstreams": total, "upstreams_healthy": healthy}
        if healthy:
            return RunnerHealth("always_on", extra=extra)
        # Upstream URLs stay out of the reason (it may be shown publicly); the log names them.
        errors = "; ".join(f"upstream {i + 1}: {u.last_error}" for i, u in enumerate(self.upstreams))
        return RunnerHealth("unavailable", reason=f"no healthy upstream ({errors})", extra=extra)

    async def check_once(self) -> None:
        await asyncio.gather(*(self._check(u) for u in self.upstreams))

    async def _check(self, upstream: Upstream) -> None:
        url = urljoin(upstream.base_url.rstrip("/") + "/", self._check_path)
        try:
            async with asyncio.timeout(self._check_timeout):
                status = await self._get(url)
        except TRANSPORT_ERRORS as exc:
            self.mark_failed(upstream, f"health check failed: {describe(exc)}")
            return
        if 200 <= status < 300:
            self.mark_ok(upstream)
        else:
            self.mark_failed(upstream, f"health check answered HTTP {status}")

    async def start(self) -> None:
        """Run one check now (so health is known at start-up), then every `check_interval` s."""
        if self._task is not None or self._check_interval <= 0:
            return
        await self.check_once()
        self._task = asyncio.create_task(self._run(), name="batchin-upstream-health")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._check_interval)
            try:
                await self.check_once()
            except Exception:  # a bug here must not silently freeze health for the process' life
                log.exception("upstream health check crashed; retrying next interval")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def describe(exc: BaseException) -> str:
    """A one-line reason: the exception type, and its message when it has one.

    Reasons reach callers (error messages, the public health reason), so they never carry the
    upstream's address: aiohttp's connect errors name host and port, and an OSError from connect
    names the peer, so those are described by type and errno alone."""
    name = type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"{name}: {os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"{name}: connect timed out"
    if isinstance(exc, OSError):
        return f"{name}: {os_reason(exc)}"
    if isinstance(exc, aiohttp.InvalidURL):
        return name
    message = str(exc)
    return f"{name}: {message}" if message else name
