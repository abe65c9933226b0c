"""A text runner backed by remote OpenAI-compatible upstreams (vLLM, SGLang, TGI, Ollama, providers).

This is how a deployment scales text past one machine: the catalog names one or more upstream base
URLs for a model, and this runner streams from them over pooled keep-alive connections
(upstream_http.py and upstream_pool.py: httptools' C parser under an asyncio Protocol, one write per
request, a stream's bytes handed to the SSE decoder as they arrive). Connections, health checks,
failover and the mapping of upstream refusals onto our errors are upstream_client.py's, shared with
the remote media runners.

A broken stream (transport error, error event, end without completion) → ServiceUnavailable.

Vision: a message with image parts (catalog capability `vision`) goes upstream as OpenAI's content
list, text and `image_url` parts in their order; each image counts `TOKENS_PER_IMAGE` in the prompt
estimate, which the upstream's reported usage replaces.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import orjson

from batchin.errors import InvalidRequest, ServiceUnavailable
from batchin.models.base import (
    ChatMessage,
    ChatParams,
    CompletionParams,
    PreparedPrompt,
    SamplingParams,
    TextDelta,
    ToolCallDelta,
    ToolSet,
    Usage,
)
from batchin.models.tool_prompt import tool_objects
from batchin.models.upstream_client import RemoteConfig, UpstreamClient, remote_config
from batchin.models.upstream_health import Upstream, describe
from batchin.models.upstream_http import TRANSPORT_ERRORS, HttpConnection
from batchin.models.upstream_stream import FINISH_REASONS, StreamDecoder

__all__ = ["TOKENS_PER_IMAGE", "RemoteConfig", "RemoteRunner", "UpstreamRequest", "estimate_tokens"]

# Chat templates wrap each message in a few special tokens (role, start/end markers), and prime the
# reply with a few more; OpenAI documents 3-4 per message and 3 for the reply.
_TOKENS_PER_MESSAGE = 4
_TOKENS_REPLY_PRIMING = 3
_TOKENS_FIM_MARKERS = 3  # prefix / suffix / middle markers
# An image's prompt tokens, for the estimate only: vision encoders take ~1,000-1,300 tokens for a
# 1024x1024 image (OpenAI's high detail: 765; Qwen-VL: ~1,300). The upstream's usage replaces it.
TOKENS_PER_IMAGE = 1024
# A whole (non-streaming) answer past this is not a text completion we can use.
_WHOLE_ANSWER_LIMIT = 64 << 20


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """The `payload` of a PreparedPrompt from this runner: where to POST, and what."""

    path: str  # /chat/completions | /completions
    body: dict[str, Any]


def _passed_on(sampling: SamplingParams) -> dict[str, Any]:
    """What the upstream enforces itself: the response format and the penalties."""
    body: dict[str, Any] = {}
    out = sampling.json_output
    if out is not None and out.schema is None:
        body["response_format"] = {"type": "json_object"}
    elif out is not None and out.schema is not None:
        spec = {"name": out.name, "schema": orjson.loads(out.schema), "strict": out.strict}
        body["response_format"] = {"type": "json_schema", "json_schema": spec}
    if sampling.presence_penalty:
        body["presence_penalty"] = sampling.presence_penalty
    if sampling.frequency_penalty:
        body["frequency_penalty"] = sampling.frequency_penalty
    if sampling.logit_bias:
        body["logit_bias"] = {str(token): bias for token, bias in sampling.logit_bias}
    return body


def estimate_tokens(text: str) -> int:
    """Prompt tokens without the upstream's tokenizer: one token per 4 bytes of UTF-8, rounded up.

    4 characters per token is the usual rule for English with BPE vocabularies; counting bytes
    rather than characters keeps the estimate near one token per character for CJK and emoji
    (3-4 bytes each), where a character count would undercount badly. The upstream's reported
    usage replaces the estimate when the call settles.
    """
    return (len(text.encode("utf-8")) + 3) // 4


def _wire_message(message: ChatMessage) -> dict[str, Any]:
    if not message.parts:
        return {"role": message.role, "content": message.content}
    content: list[dict[str, Any]] = []
    for part in message.parts:
        if part.type == "text":
            content.append({"type": "text", "text": part.text})
        else:
            image: dict[str, Any] = {"url": part.url}
            if part.detail is not None:
                image["detail"] = part.detail
            content.append({"type": "image_url", "image_url": image})
    return {"role": message.role, "content": content}


class RemoteRunner(UpstreamClient):
    """A text model served by remote OpenAI-compatible upstreams."""

    supports_fim = True  # the upstream decides how to honour `suffix`
    supports_tools = True  # tools, tool_choice and tool messages pass through to the upstream

    def __init__(self, config: RemoteConfig) -> None:
        if config.context_length < 1:
            raise ValueError(f"remote model {config.model_id!r}: context_length >= 1")
        super().__init__(config)
        self.context_length = config.context_length

    @classmethod
    def from_entry(cls, entry: Any) -> RemoteRunner:
        """Build from a catalog entry (see upstream_client.remote_config)."""
        return cls(remote_config(entry))

    async def prepare_chat(self, params: ChatParams) -> PreparedPrompt:
        messages = [_upstream_message(m) for m in params.messages]
        prompt_tokens = _TOKENS_REPLY_PRIMING + sum(
            _TOKENS_PER_MESSAGE
            + estimate_tokens(m.role)
            + estimate_tokens(m.content)
            + m.images * TOKENS_PER_IMAGE
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
        return body | _passed_on(sampling)

    async def generate(self, prepared: PreparedPrompt) -> AsyncGenerator[TextDelta, None]:
        request = prepared.payload
        if not isinstance(request, UpstreamRequest):
            raise TypeError("RemoteRunner.generate takes a PreparedPrompt from this runner's prepare_*")
        stream = bool(request.body.get("stream"))
        connection, upstream = await self.post_json(request.path, request.body, stream=stream)
        # Closing this generator early runs a `finally` that closes the connection mid-body, so
        # the upstream sees the disconnect and stops generating. After a complete body the
        # connection goes back to the pool.
        finished = False
        try:
            if not stream:
                delta = await self._whole(connection, upstream, request, prepared.prompt_tokens)
                finished = True
                yield delta
                return
            decoder = StreamDecoder(chat=request.path == "/chat/completions")
            read = connection.read_chunk
            try:
                # Chunks as they arrive (usually one event each), split into lines by the decoder.
                # No break at `[DONE]`: reading on to the end of the body (one more chunk
                # terminator) lets the connection go back to the pool instead of being closed.
                while chunk := await read():
                    for item in decoder.feed(chunk):
                        yield item if isinstance(item, TextDelta) else TextDelta(item)
            except TRANSPORT_ERRORS as exc:
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
                connection.release()
            else:
                connection.close()

    async def _whole(
        self, connection: HttpConnection, upstream: Upstream, request: UpstreamRequest, estimate: int
    ) -> TextDelta:
        """A non-streaming answer as one delta carrying the text, finish reason and usage."""
        try:
            body = orjson.loads(await connection.read_all(_WHOLE_ANSWER_LIMIT))
            choice = body["choices"][0]
            chat = request.path == "/chat/completions"
            text = choice["message"]["content"] if chat else choice["text"]
            calls = _whole_tool_calls(choice["message"].get("tool_calls")) if chat else ()
            usage = body.get("usage") or {}
        except (*TRANSPORT_ERRORS, orjson.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
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


def _upstream_message(message: ChatMessage) -> dict[str, Any]:
    """A message in OpenAI's shape: its image parts, its tool calls or the call it answers."""
    out = _wire_message(message)
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
