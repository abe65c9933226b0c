"""What every remote runner shares: one OpenAI-compatible route (one or more upstream base URLs),
pooled connections, health checks, failover on connect failure, and one mapping of the
upstream's refusals onto our errors. The text runner (remote.py) and the media runners
(remote_embeddings.py, remote_audio.py, remote_images.py) are subclasses that only shape requests
and read answers.

Two clients: every JSON call (chat, completions and their streams, embeddings, image generation,
speech) and every health check go over the lean client of upstream_http.py and upstream_pool.py
(`post_json`: the request head built once per path as bytes, one write per request); multipart
uploads (transcriptions) and the image links an upstream answers with (any host, maybe redirected)
keep a lazily made aiohttp session (`post`, `_client()`). `read_bytes`/`read_json` read an answer
from either.

Failure policy (no request is ever run twice):
- connect failure  → mark that upstream unhealthy, try the next one; none left → ServiceUnavailable
- anything after the request may have been sent (read timeouts, resets, HTTP errors) → no retry
- HTTP 429 → RateLimited (the upstream's Retry-After); 401/403/404 → ServiceUnavailable (our
  credentials, base URL or upstream model name are wrong, not the caller's request); other 4xx →
  InvalidRequest with the upstream's message; 5xx → ServiceUnavailable
- an answer we cannot read → ServiceUnavailable, and the upstream is marked unhealthy

Cancellation: a caller that goes away cancels the task awaiting the request or a read; the
connection is then closed (never pooled), so the upstream sees the disconnect and can stop its work.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from batchin.errors import InvalidRequest, RateLimited, ServiceUnavailable
from batchin.models.base import RunnerHealth
from batchin.models.upstream_errors import error_details, retry_after
from batchin.models.upstream_health import Upstream, UpstreamPool, describe
from batchin.models.upstream_http import (
    TRANSPORT_ERRORS,
    HttpConnection,
    UpstreamConnectError,
    UpstreamTooLarge,
)
from batchin.models.upstream_pool import Endpoint, HttpClient

__all__ = ["RemoteConfig", "UpstreamClient", "remote_config"]

log = logging.getLogger("batchin.models.remote")

_ERROR_BODY_LIMIT = 1 << 20  # an error answer past this is cut off (the status says enough)
_CHECK_BODY_LIMIT = 16 << 20  # a provider's model listing can run to megabytes


@dataclass(frozen=True, slots=True)
class RemoteConfig:
    model_id: str  # our public id
    base_urls: tuple[str, ...]  # OpenAI base URLs, e.g. ("http://10.0.0.7:8000/v1",)
    upstream_model: str  # the `model` the upstream expects
    context_length: int = 0  # text models only (the text runner requires it)
    api_key: str | None = field(default=None, repr=False)  # resolved secret, sent as Bearer
    max_concurrency: int = 64
    connect_timeout: float = 5.0
    read_timeout: float = 120.0  # between bytes: covers the prefill of a long prompt under load
    pool_timeout: float = 10.0  # waiting for a free pooled connection
    # Below the 5 s idle timeout of uvicorn (vLLM, SGLang) and most proxies, so we close idle
    # connections first: a POST on a connection the upstream just closed fails and is not retried.
    keepalive_timeout: float = 4.0
    health_check_path: str = "models"  # see UpstreamPool: "models" → {base}/models, "/health" → root
    health_check_interval: float = 10.0  # seconds; 0 disables the background checker
    health_check_timeout: float = 3.0

    def __post_init__(self) -> None:
        if not self.base_urls:
            raise ValueError(f"remote model {self.model_id!r} needs at least one upstream URL")
        if self.context_length < 0 or self.max_concurrency < 1:
            raise ValueError(f"remote model {self.model_id!r}: context_length >= 0, max_concurrency >= 1")


def remote_config(entry: Any) -> RemoteConfig:
    """The config of a catalog entry: `id`, `context_length`, `max_concurrency`, and the upstream
    either nested as catalog.py has it (`upstream.urls`, `.model`, `.api_key_env`,
    `.timeout_seconds`) or flat (`upstreams`, `upstream_model`, `api_key_env`)."""
    nested = getattr(entry, "upstream", None)
    if nested is not None:
        urls, model, key_env = nested.urls, nested.model, nested.api_key_env
        timeout = getattr(nested, "timeout_seconds", None)
    else:
        urls, model, key_env = entry.upstreams, entry.upstream_model, getattr(entry, "api_key_env", None)
        timeout = None
    api_key = os.environ.get(key_env) if key_env else None
    if key_env and api_key is None:
        # Serve the other models anyway; this one's health checks will report the 401.
        log.warning("model %s: env %s is not set; calling upstreams without a key", entry.id, key_env)
    options: dict[str, Any] = {} if timeout is None else {"read_timeout": float(timeout)}
    if getattr(entry, "max_concurrency", None) is not None:
        options["max_concurrency"] = entry.max_concurrency
    # Health checks: `engine_options.health_check_path` ("models" or e.g. "/health") and
    # `.health_check_interval` (seconds; 0: none) in the catalog.
    engine_options = getattr(entry, "engine_options", None) or {}
    for name, kind in (("health_check_path", str), ("health_check_interval", float)):
        value = getattr(entry, name, None)
        value = engine_options.get(name) if value is None else value
        if value is not None:
            options[name] = kind(value)
    return RemoteConfig(
        model_id=entry.id,
        base_urls=tuple(str(url) for url in urls),
        upstream_model=model or entry.id,
        context_length=getattr(entry, "context_length", None) or 0,
        api_key=api_key,
        **options,
    )


class UpstreamClient:
    """One model served by remote OpenAI-compatible upstreams. Call `start()` to run health
    checks in the background and `close()` to stop them and release connections.

    `session`: a caller's aiohttp session for the aiohttp calls (not closed here); by default the
    runner makes its own on first use (aiohttp sessions belong to the running event loop, and the
    registry builds runners outside it) and closes it in `close()`."""

    def __init__(self, config: RemoteConfig, session: aiohttp.ClientSession | None = None) -> None:
        self.config = config
        self.max_concurrency = config.max_concurrency
        self._owns_session = session is None
        self._session = session
        # The aiohttp calls' headers (multipart uploads).
        self._headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._http = HttpClient(
            # Health checks need a connection even when every stream slot is busy.
            limit=config.max_concurrency + 1,
            connect_timeout=config.connect_timeout,
            pool_timeout=config.pool_timeout,
            read_timeout=config.read_timeout,
            keepalive_timeout=config.keepalive_timeout,
        )
        # The lean client's endpoints and request heads (up to the Content-Length value), per
        # (base URL, path, stream): everything in them is fixed per route.
        self._heads: dict[tuple[str, str, bool], tuple[Endpoint, bytes]] = {}
        # `identity`: a compressing proxy would otherwise buffer the event stream.
        auth = f"Authorization: Bearer {config.api_key}\r\n" if config.api_key else ""
        self._fixed_headers = f"User-Agent: batchin\r\n{auth}Accept-Encoding: identity\r\n".encode()
        self._pool = UpstreamPool(
            config.base_urls,
            self._get_status,
            check_path=config.health_check_path,
            check_interval=config.health_check_interval,
            check_timeout=config.health_check_timeout,
        )

    async def start(self) -> None:
        await self._pool.start()

    async def load(self, weights: object = None) -> None:
        """The registry's start-up hook (a remote model has no weights): run health checks."""
        await self.start()

    async def close(self) -> None:
        await self._pool.stop()
        self._http.close()
        self._heads.clear()  # their endpoints hold the closed pools
        session, self._session = self._session, None
        if self._owns_session and session is not None:
            await session.close()

    def health(self) -> RunnerHealth:
        return self._pool.health()

    def _client(self) -> aiohttp.ClientSession:
        """The session, made on first use (inside the event loop)."""
        session = self._session
        if session is None:
            session = self._session = self._new_session()
        return session

    def _new_session(self) -> aiohttp.ClientSession:
        config = self.config
        connector = aiohttp.TCPConnector(
            limit=config.max_concurrency,
            limit_per_host=0,
            keepalive_timeout=config.keepalive_timeout,
        )
        timeout = aiohttp.ClientTimeout(
            total=None,  # a stream lasts as long as the generation; sock_read bounds the gaps
            # aiohttp's `connect` covers the wait for a pooled connection and the connect itself.
            connect=config.pool_timeout + config.connect_timeout,
            sock_connect=config.connect_timeout,
            sock_read=config.read_timeout,
        )
        # No cookies: an upstream's cookie must not follow one caller's request into another's.
        return aiohttp.ClientSession(
            connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
        )

    # -- requests over the lean client ------------------------------------------------------

    async def post_json(
        self, path: str, body: dict[str, Any], *, stream: bool = False
    ) -> tuple[HttpConnection, Upstream]:
        """POST `body` as JSON to the first upstream that accepts a connection (failover as
        `post`); the connection with a 200 answer's head read. The caller reads the body and then
        calls `release()` (read to the end) or `close()`."""
        content = orjson.dumps(body)
        length = b"%d\r\n\r\n" % len(content)
        errors: list[str] = []
        for upstream in self._pool.candidates():
            try:
                endpoint, head = self._post_head(upstream, path, stream)
                connection = await endpoint.request(b"".join((head, length, content)))
            except UpstreamConnectError as exc:
                errors.append(self._not_connected(upstream, exc))  # safe to try the next one
                continue
            except TRANSPORT_ERRORS as exc:
                raise self._failed_after_send(upstream, exc) from exc
            if connection.status != 200:
                await self._refuse_lean(connection, upstream)
            self._pool.mark_ok(upstream)
            return connection, upstream
        raise self._unreachable(errors)

    def _post_head(self, upstream: Upstream, path: str, stream: bool) -> tuple[Endpoint, bytes]:
        """The endpoint and the request head up to the Content-Length value (built once)."""
        key = (upstream.base_url, path, stream)
        built = self._heads.get(key)
        if built is None:
            endpoint = self._http.endpoint(upstream.base_url.rstrip("/") + path)
            accept = b"text/event-stream" if stream else b"application/json"
            head = b"".join(
                (
                    b"POST %s HTTP/1.1\r\nHost: %s\r\n" % (endpoint.target, endpoint.host_header),
                    self._fixed_headers,
                    b"Accept: %s\r\nContent-Type: application/json\r\nContent-Length: " % accept,
                )
            )
            built = self._heads[key] = (endpoint, head)
        return built

    async def _get_status(self, url: str) -> int:
        """A health check: GET `url`, read the answer to the end; its status."""
        endpoint = self._http.endpoint(url)
        head = b"GET %s HTTP/1.1\r\nHost: %s\r\n%sAccept: application/json\r\n\r\n" % (
            endpoint.target,
            endpoint.host_header,
            self._fixed_headers,
        )
        connection = await endpoint.request(head)
        try:
            await connection.read_all(_CHECK_BODY_LIMIT)  # to the end: the connection is reusable
        except BaseException:
            connection.close()
            raise
        connection.release()
        return connection.status

    async def _refuse_lean(self, connection: HttpConnection, upstream: Upstream) -> None:
        try:
            body = await connection.read_all(_ERROR_BODY_LIMIT)
        except TRANSPORT_ERRORS:
            body = b""  # the status says enough
        finally:
            connection.release()  # closes the connection instead when the body was not read to the end
        retry = connection.headers.get(b"retry-after")
        headers = {"Retry-After": retry.decode("latin-1")} if retry is not None else {}
        raise self._refusal(connection.status, headers, body, upstream)

    def _not_connected(self, upstream: Upstream, exc: BaseException) -> str:
        """Nothing reached `upstream` (either client's failover): marked unhealthy; the reason,
        for the error when no upstream connects."""
        reason = describe(exc)
        self._pool.mark_failed(upstream, reason)
        return reason

    def _failed_after_send(self, upstream: Upstream, exc: BaseException) -> ServiceUnavailable:
        """The error when the request may have reached `upstream` (either client): never retried,
        since that could run the work twice; the upstream is marked unhealthy."""
        self._pool.mark_failed(upstream, describe(exc))
        return ServiceUnavailable(f"The upstream of model {self.config.model_id} failed: {describe(exc)}.")

    def _unreachable(self, errors: list[str]) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"No upstream of model {self.config.model_id} is reachable "
            f"({len(errors)} tried; last error: {errors[-1] if errors else 'none'})."
        )

    # -- requests over aiohttp (multipart uploads, image links) ------------------------------

    async def post(
        self, path: str, data: Callable[[], Any], headers: Mapping[str, str]
    ) -> tuple[aiohttp.ClientResponse, Upstream]:
        """Send to the first upstream that accepts a connection; retry nothing once sent. `data`
        makes the body for each attempt (a multipart form can be sent only once)."""
        session = self._client()
        errors: list[str] = []
        for upstream in self._pool.candidates():
            try:
                response = await session.post(upstream.endpoint(path), data=data(), headers=headers)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                # Safe to try the next one. (aiohttp cannot tell a connect timeout from a wait for
                # a pooled connection; the pool has a connection per admission slot, plus one per
                # upstream for health checks, so it never waits.)
                errors.append(self._not_connected(upstream, exc))
                continue
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise self._failed_after_send(upstream, exc) from exc
            if response.status != 200:
                await self._raise_for_status(response, upstream)
            self._pool.mark_ok(upstream)
            return response, upstream
        raise self._unreachable(errors)

    async def read_bytes(
        self, response: HttpConnection | aiohttp.ClientResponse, upstream: Upstream, *, limit: int
    ) -> bytes:
        """The whole body (at most `limit` bytes); a broken or oversized body is the upstream's
        failure. Read to the end, the connection goes back to its pool; otherwise it is closed."""
        try:
            if isinstance(response, HttpConnection):
                body = await response.read_all(limit)
            else:
                body = await _read_aiohttp(response, limit)
        except UpstreamTooLarge:
            response.close()
            self._pool.mark_failed(upstream, f"answer over {limit} bytes")
            raise ServiceUnavailable(
                f"The upstream of model {self.config.model_id} sent an answer over {limit} bytes."
            ) from None
        except BaseException as exc:  # a read error, or our caller cancelled: drop the connection
            response.close()
            if isinstance(exc, (*TRANSPORT_ERRORS, aiohttp.ClientError)):
                self._pool.mark_failed(upstream, f"answer broke off: {describe(exc)}")
                raise ServiceUnavailable(
                    f"The upstream of model {self.config.model_id} broke off its answer."
                ) from exc
            raise
        response.release()
        return body

    async def read_json(
        self, response: HttpConnection | aiohttp.ClientResponse, upstream: Upstream, *, limit: int = 256 << 20
    ) -> Any:
        body = await self.read_bytes(response, upstream, limit=limit)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise self.unreadable(upstream, "not JSON") from exc

    def unreadable(self, upstream: Upstream, why: str) -> ServiceUnavailable:
        """The error for an answer we cannot use (and the upstream marked unhealthy)."""
        self._pool.mark_failed(upstream, f"unreadable answer: {why}")
        return ServiceUnavailable(f"The upstream of model {self.config.model_id} sent an unreadable answer.")

    async def _raise_for_status(self, response: aiohttp.ClientResponse, upstream: Upstream) -> None:
        try:
            body = await response.read()
        except (aiohttp.ClientError, TimeoutError):
            body = b""  # the status says enough
        finally:
            response.release()  # closes the connection instead when the body was not read to the end
        raise self._refusal(response.status, response.headers, body, upstream)

    def _refusal(
        self, status: int, headers: Mapping[str, str], body: bytes, upstream: Upstream
    ) -> RateLimited | ServiceUnavailable | InvalidRequest:
        """Our error for an upstream's non-200 answer (see the failure policy above)."""
        message, param = error_details(body)
        model = self.config.model_id
        if status == 429:
            return RateLimited(message or "The upstream is rate limiting.", retry_after=retry_after(headers))
        if status in (401, 403, 404):
            log.error(
                "upstream %s refused model %s with HTTP %d: %s", upstream.base_url, model, status, message
            )
            return ServiceUnavailable(
                f"Model {model} is misconfigured on this server (upstream HTTP {status})."
            )
        if 400 <= status < 500:
            return InvalidRequest(
                f"The upstream of model {model} refused the request (HTTP {status}): "
                f"{message or 'no reason given'}",
                param=param,
            )
        self._pool.mark_failed(upstream, f"HTTP {status}")
        return ServiceUnavailable(f"The upstream of model {model} failed (HTTP {status}).")


async def _read_aiohttp(response: aiohttp.ClientResponse, limit: int) -> bytes:
    if response.content_length is not None and response.content_length > limit:
        raise UpstreamTooLarge(limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():  # to the end: the connection is reusable
        size += len(chunk)
        if size > limit:
            raise UpstreamTooLarge(limit)
        parts.append(chunk)
    return b"".join(parts)
