"""A text runner backed by remote OpenAI-compatible upstreams (vLLM, SGLang, TGI, Ollama, providers).

This is how a deployment scales text past one machine: the catalog names one or more upstream base
URLs for a model, and this runner streams from them over pooled HTTP connections: one aiohttp
session per runner, whose C HTTP parser costs a fraction of a pure-Python client per request and
per event (the client was the largest CPU cost of a proxied call).

Failure policy (no request is ever generated twice):
- connect failure  → mark that upstream unhealthy, try the next one; none left → ServiceUnavailable
- anything after the request may have been sent (read timeouts, resets, HTTP errors) → no retry
- HTTP 429 → RateLimited (the upstream's Retry-After); 401/403/404 → ServiceUnavailable (our
  credentials, base URL or upstream model name are wrong, not the caller's request); other 4xx →
  InvalidRequest with the upstream's message; 5xx → ServiceUnavailable
- a broken stream (transport error, error event, end without completion) → ServiceUnavailable
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from batchin.errors import InvalidRequest, RateLimited, ServiceUnavailable
from batchin.models.base import (
    ChatMessage,
    ChatParams,
    CompletionParams,
    PreparedPrompt,
    RunnerHealth,
    SamplingParams,
    TextDelta,
    ToolCallDelta,
    ToolSet,
    Usage,
)
from batchin.models.tool_prompt import tool_objects
from batchin.models.upstream_errors import error_details, retry_after
from batchin.models.upstream_health import Upstream, UpstreamPool, describe
from batchin.models.upstream_stream import FINISH_REASONS, StreamDecoder

__all__ = ["RemoteConfig", "RemoteRunner", "UpstreamRequest", "estimate_tokens"]

log = logging.getLogger("batchin.models.remote")

# Chat templates wrap each message in a few special tokens (role, start/end markers), and prime the
# reply with a few more; OpenAI documents 3-4 per message and 3 for the reply.
_TOKENS_PER_MESSAGE = 4
_TOKENS_REPLY_PRIMING = 3
_TOKENS_FIM_MARKERS = 3  # prefix / suffix / middle markers


@dataclass(frozen=True, slots=True)
class RemoteConfig:
    model_id: str  # our public id
    base_urls: tuple[str, ...]  # OpenAI base URLs, e.g. ("http://10.0.0.7:8000/v1",)
    upstream_model: str  # the `model` the upstream expects
    context_length: int
    api_key: str | None = field(default=None, repr=False)  # resolved secret, sent as Bearer
    max_concurrency: int = 64
    connect_timeout: float = 5.0
    read_timeout: float = 120.0  # between bytes: covers the prefill of a long prompt under load
    # Unused since aiohttp, which has no write timeout: a request body is a few KiB that the
    # socket buffer takes at once, and an upstream that stops reading trips read_timeout.
    write_timeout: float = 30.0
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
        if self.context_length < 1 or self.max_concurrency < 1:
            raise ValueError(f"remote model {self.model_id!r}: context_length and max_concurrency >= 1")


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """The `payload` of a PreparedPrompt from this runner: where to POST, and what."""

    path: str  # /chat/completions | /completions
    body: dict[str, Any]


def estimate_tokens(text: str) -> int:
    """Prompt tokens without the upstream's tokenizer: one token per 4 bytes of UTF-8, rounded up.

    4 characters per token is the usual rule for English with BPE vocabularies; counting bytes
    rather than characters keeps the estimate near one token per character for CJK and emoji
    (3-4 bytes each), where a character count would undercount badly. The upstream's reported
    usage replaces the estimate when the call settles.
    """
    return (len(text.encode("utf-8")) + 3) // 4


class RemoteRunner:
    """One model served by remote OpenAI-compatible upstreams. Call `start()` to run health
    checks in the background and `close()` to stop them and release connections.

    `session`: a caller's aiohttp session to use (and not close); by default the runner makes its
    own on first use (aiohttp sessions belong to the running event loop, and the registry builds
    runners outside it) and closes it in `close()`."""

    supports_fim = True  # the upstream decides how to honour `suffix`
    supports_tools = True  # tools, tool_choice and tool messages pass through to the upstream

    def __init__(self, config: RemoteConfig, session: aiohttp.ClientSession | None = None) -> None:
        self.config = config
        self.context_length = config.context_length
        self.max_concurrency = config.max_concurrency
        self._owns_session = session is None
        self._session = session
        self._headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        # Built once: per-request header dicts are merged into aiohttp's multidict on every call.
        # `identity`: a compressing proxy would otherwise buffer the event stream.
        base = {**self._headers, "Content-Type": "application/json", "Accept-Encoding": "identity"}
        self._stream_headers = {**base, "Accept": "text/event-stream"}
        self._json_headers = {**base, "Accept": "application/json"}
        self._pool = UpstreamPool(
            config.base_urls,
            self._client,
            check_path=config.health_check_path,
            check_interval=config.health_check_interval,
            check_timeout=config.health_check_timeout,
            headers=self._headers,
        )

    @classmethod
    def from_entry(cls, entry: Any) -> RemoteRunner:
        """Build from a catalog entry: `id`, `context_length`, `max_concurrency`, and the upstream
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
        for name in ("max_concurrency", "health_check_path", "health_check_interval"):
            if getattr(entry, name, None) is not None:
                options[name] = getattr(entry, name)
        config = RemoteConfig(
            model_id=entry.id,
            base_urls=tuple(str(url) for url in urls),
            upstream_model=model or entry.id,
            context_length=entry.context_length,
            api_key=api_key,
            **options,
        )
        return cls(config)

    async def start(self) -> None:
        await self._pool.start()

    async def load(self, weights: object = None) -> None:
        """The registry's start-up hook (a remote model has no weights): run health checks."""
        await self.start()

    async def close(self) -> None:
        await self._pool.stop()
        session, self._session = self._session, None
        if self._owns_session and session is not None:
            await session.close()

    def _client(self) -> aiohttp.ClientSession:
        """The session, made on first use (inside the event loop)."""
        session = self._session
        if session is None:
            session = self._session = self._new_session()
        return session

    def _new_session(self) -> aiohttp.ClientSession:
        config = self.config
        connector = aiohttp.TCPConnector(
            # Health checks need a connection even when every stream slot is busy.
            limit=config.max_concurrency + len(config.base_urls),
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

    def health(self) -> RunnerHealth:
        return self._pool.health()

    async def prepare_chat(self, params: ChatParams) -> PreparedPrompt:
        messages = [_upstream_message(m) for m in params.messages]
        prompt_tokens = _TOKENS_REPLY_PRIMING + sum(
            _TOKENS_PER_MESSAGE + estimate_tokens(m.role) + estimate_tokens(m.content)
            for m in params.messages
        )
        body = self._body(params.sampling, stream=params.stream)
        body["messages"] = messages
        if params.tools is not None:
            body.update(_upstream_tools(params.tools))
            prompt_tokens += estimate_tokens(orjson.dumps(body["tools"]).decode())
            prompt_tokens += sum(estimate_tokens(c.arguments) for m in params.messages for c in m.tool_calls)
        self._check_context(prompt_tokens, params.sampling, prompt_param="messages")
        return PreparedPrompt(
            prompt_tokens, params.sampling, UpstreamRequest("/chat/completions", body), exact=False
        )

    async def prepare_completion(self, params: CompletionParams) -> PreparedPrompt:
        prompt_tokens = estimate_tokens(params.prompt)
        body = self._body(params.sampling, stream=params.stream)
        body["prompt"] = params.prompt
        if params.suffix is not None:
            prompt_tokens += estimate_tokens(params.suffix) + _TOKENS_FIM_MARKERS
            body["suffix"] = params.suffix
        self._check_context(prompt_tokens, params.sampling, prompt_param="prompt")
        return PreparedPrompt(
            prompt_tokens, params.sampling, UpstreamRequest("/completions", body), exact=False
        )

    def _check_context(self, prompt_tokens: int, sampling: SamplingParams, *, prompt_param: str) -> None:
        limit = self.context_length
        if sampling.max_tokens < 1:
            raise InvalidRequest("max_tokens must be at least 1.", param="max_tokens")
        if prompt_tokens >= limit:
            raise InvalidRequest(
                f"This model's maximum context length is {limit} tokens; the prompt alone is about "
                f"{prompt_tokens} tokens (estimated). Shorten the {prompt_param}.",
                param=prompt_param,
            )
        if prompt_tokens + sampling.max_tokens > limit:
            raise InvalidRequest(
                f"This model's maximum context length is {limit} tokens; you requested about "
                f"{prompt_tokens + sampling.max_tokens} ({prompt_tokens} estimated in the prompt, "
                f"{sampling.max_tokens} for the completion). Reduce max_tokens or the prompt.",
                param="max_tokens",
            )

    def _body(self, sampling: SamplingParams, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.upstream_model,
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        return body

    async def generate(self, prepared: PreparedPrompt) -> AsyncGenerator[TextDelta, None]:
        request = prepared.payload
        if not isinstance(request, UpstreamRequest):
            raise TypeError("RemoteRunner.generate takes a PreparedPrompt from this runner's prepare_*")
        response, upstream = await self._open(request)
        # Closing this generator early runs a `finally` that closes the response: that drops the
        # connection mid-body, so the upstream sees the disconnect and stops generating. After a
        # complete body the connection has gone back to the pool already (release is a no-op).
        finished = False
        try:
            if not request.body.get("stream"):
                delta = await self._whole(response, upstream, request, prepared.prompt_tokens)
                finished = True
                yield delta
                return
            decoder = StreamDecoder(chat=request.path == "/chat/completions")
            try:
                # Chunks as they arrive (usually one event each), split into lines by the decoder.
                async for chunk in response.content.iter_any():
                    for item in decoder.feed(chunk):
                        yield item if isinstance(item, TextDelta) else TextDelta(item)
                # No break at `[DONE]`: reading on to the end of the body (one more chunk
                # terminator) lets the connection go back to the pool instead of being closed.
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._pool.mark_failed(upstream, f"stream broke: {describe(exc)}")
                raise ServiceUnavailable(
                    f"The upstream of model {self.config.model_id} broke off the stream."
                ) from exc
            finished = True
            for item in decoder.end():
                yield item if isinstance(item, TextDelta) else TextDelta(item)
            if not decoder.complete:
                self._pool.mark_failed(upstream, "stream ended before completion")
                raise ServiceUnavailable(
                    f"The upstream of model {self.config.model_id} ended the stream early."
                )
            yield decoder.final(prepared.prompt_tokens)
        finally:
            if finished:
                response.release()
            else:
                response.close()

    async def _whole(
        self, response: aiohttp.ClientResponse, upstream: Upstream, request: UpstreamRequest, estimate: int
    ) -> TextDelta:
        """A non-streaming answer as one delta carrying the text, finish reason and usage."""
        try:
            body = orjson.loads(await response.read())
            choice = body["choices"][0]
            chat = request.path == "/chat/completions"
            text = choice["message"]["content"] if chat else choice["text"]
            calls = _whole_tool_calls(choice["message"].get("tool_calls")) if chat else ()
            usage = body.get("usage") or {}
        except (
            aiohttp.ClientError,
            TimeoutError,
            orjson.JSONDecodeError,
            KeyError,
            IndexError,
            TypeError,
        ) as exc:
            self._pool.mark_failed(upstream, f"unreadable answer: {type(exc).__name__}")
            raise ServiceUnavailable(
                f"The upstream of model {self.config.model_id} sent an unreadable answer."
            ) from exc
        completion = int(usage.get("completion_tokens") or (1 if text or calls else 0))
        return TextDelta(
            str(text or ""),
            finish_reason=FINISH_REASONS.get(choice.get("finish_reason") or "stop", "stop"),
            usage=Usage(int(usage.get("prompt_tokens") or estimate), completion),
            tool_calls=calls,
        )

    async def _open(self, request: UpstreamRequest) -> tuple[aiohttp.ClientResponse, Upstream]:
        """Send to the first upstream that accepts a connection; retry nothing once sent."""
        content = orjson.dumps(request.body)
        headers = self._stream_headers if request.body.get("stream") else self._json_headers
        session = self._client()
        errors: list[str] = []
        for upstream in self._pool.candidates():
            try:
                response = await session.post(upstream.endpoint(request.path), data=content, headers=headers)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                # Nothing reached the upstream: safe to try the next one. (aiohttp cannot tell a
                # connect timeout from a wait for a pooled connection; the pool has a connection
                # per admission slot, plus one per upstream for health checks, so it never waits.)
                self._pool.mark_failed(upstream, describe(exc))
                errors.append(describe(exc))
                continue
            except (aiohttp.ClientError, TimeoutError) as exc:
                # The request may have been sent: retrying could run the generation twice.
                self._pool.mark_failed(upstream, describe(exc))
                raise ServiceUnavailable(
                    f"The upstream of model {self.config.model_id} failed: {describe(exc)}."
                ) from exc
            if response.status != 200:
                await self._raise_for_status(response, upstream)
            self._pool.mark_ok(upstream)
            return response, upstream
        raise ServiceUnavailable(
            f"No upstream of model {self.config.model_id} is reachable "
            f"({len(errors)} tried; last error: {errors[-1] if errors else 'none'})."
        )

    async def _raise_for_status(self, response: aiohttp.ClientResponse, upstream: Upstream) -> None:
        try:
            body = await response.read()
        except (aiohttp.ClientError, TimeoutError):
            body = b""  # the status says enough
        finally:
            response.release()  # closes the connection instead when the body was not read to the end
        status = response.status
        message, param = error_details(body)
        model = self.config.model_id
        if status == 429:
            raise RateLimited(
                message or "The upstream is rate limiting.", retry_after=retry_after(response.headers)
            )
        if status in (401, 403, 404):
            log.error(
                "upstream %s refused model %s with HTTP %d: %s", upstream.base_url, model, status, message
            )
            raise ServiceUnavailable(
                f"Model {model} is misconfigured on this server (upstream HTTP {status})."
            )
        if 400 <= status < 500:
            raise InvalidRequest(message or f"The upstream refused the request (HTTP {status}).", param=param)
        self._pool.mark_failed(upstream, f"HTTP {status}")
        raise ServiceUnavailable(f"The upstream of model {model} failed (HTTP {status}).")


def _upstream_message(message: ChatMessage) -> dict[str, Any]:
    """A message in OpenAI's shape, with its tool calls or the call it answers."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["content"] = message.content or None  # OpenAI's form for a turn of calls only
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def _upstream_tools(tools: ToolSet) -> dict[str, Any]:
    """tools, tool_choice and parallel_tool_calls, as the caller sent them."""
    choice: Any = tools.choice
    if tools.function is not None:
        choice = {"type": "function", "function": {"name": tools.function}}
    return {"tools": tool_objects(tools), "tool_choice": choice, "parallel_tool_calls": tools.parallel}


def _whole_tool_calls(calls: Any) -> tuple[ToolCallDelta, ...]:
    """A whole answer's `message.tool_calls` as pieces (one per call, arguments whole)."""
    pieces = []
    for index, call in enumerate(calls or ()):
        function = call.get("function") or {}
        pieces.append(
            ToolCallDelta(
                index,
                id=str(call.get("id") or f"call_{index}"),
                name=str(function.get("name") or ""),
                arguments=str(function.get("arguments") or ""),
            )
        )
    return tuple(pieces)
