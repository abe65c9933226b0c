"""OpenAI's response shapes for a started text generation: whole objects and stream chunks of chat
completions and completions. Chunks of one response share its id. The Responses API's object and
event sequence are in response_serving.py (re-exported here for existing callers)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from batchin.core.random_ids import token_hex
from batchin.core.serving.response_serving import response_events, response_object
from batchin.core.serving.text_producer import StartedText
from batchin.core.serving.tool_replies import chat_tool_calls, chunk_tool_calls
from batchin.models.base import TokenLogprob, ToolCallDelta
from batchin.protocol.structured import ChatLogprobs, CompletionLogprobs
from batchin.protocol.text import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessageOut,
    Completion,
    CompletionChoice,
    CompletionUsage,
)

__all__ = [
    "chat_chunks",
    "chat_completion",
    "collect_text",
    "completion",
    "completion_chunks",
    "response_events",
    "response_object",
]


def _id(prefix: str) -> str:
    return prefix + token_hex(12)


def _usage(started: StartedText) -> CompletionUsage:
    stats = started.generation.stats
    return CompletionUsage(
        prompt_tokens=stats.prompt_tokens,
        completion_tokens=stats.completion_tokens,
        total_tokens=stats.prompt_tokens + stats.completion_tokens,
    )


async def collect_text(started: StartedText) -> str:
    return "".join([delta.text async for delta in started.generation])


@dataclass(slots=True)
class _Choice:
    parts: list[str] = field(default_factory=list)
    tokens: list[TokenLogprob] | None = None  # set when log probabilities were asked for
    calls: list[ToolCallDelta] = field(default_factory=list)  # pieces of the tool calls it made
    finish_reason: str = "stop"


async def _collect_choices(started: StartedText) -> list[_Choice]:
    choices: dict[int, _Choice] = {}
    async for delta in started.generation:
        choice = choices.get(delta.index)
        if choice is None:
            choice = choices[delta.index] = _Choice()
        if delta.text:
            choice.parts.append(delta.text)
        if delta.logprobs is not None:
            choice.tokens = [*(choice.tokens or ()), *delta.logprobs]
        choice.calls.extend(delta.tool_calls)
        if delta.finish_reason is not None:
            choice.finish_reason = delta.finish_reason
    return [choices[index] for index in sorted(choices)]


def _chat_message(choice: _Choice) -> ChatMessageOut:
    """The assistant's message; content is null when the reply is only tool calls, as OpenAI sends it."""
    text, calls = "".join(choice.parts), chat_tool_calls(choice.calls)
    return ChatMessageOut(content=text if text or not calls else None, tool_calls=calls)


def _top_dicts(top: tuple[tuple[bytes, float], ...]) -> list[dict[str, Any]]:
    return [{"token": raw.decode("utf-8", "replace"), "logprob": lp, "bytes": list(raw)} for raw, lp in top]


def _chat_logprobs(tokens: Iterable[TokenLogprob]) -> dict[str, Any]:
    """A chat choice's (or chunk's) `logprobs`, shaped as ChatLogprobs; `bytes` are each token's own."""
    content = [
        {"token": t.token, "logprob": t.logprob, "bytes": list(t.raw), "top_logprobs": _top_dicts(t.top)}
        for t in tokens
    ]
    return {"content": content, "refusal": None}


def _completion_logprobs(tokens: Iterable[TokenLogprob], offset: int) -> dict[str, Any]:
    """A legacy completion choice's (or chunk's) `logprobs`, shaped as CompletionLogprobs;
    `text_offset` counts characters of the choice's text, from `offset`."""
    listed = list(tokens)
    offsets = []
    for t in listed:
        offsets.append(offset)
        offset += len(t.token)
    return {
        "tokens": [t.token for t in listed],
        "token_logprobs": [t.logprob for t in listed],
        "top_logprobs": [{raw.decode("utf-8", "replace"): lp for raw, lp in t.top} for t in listed],
        "text_offset": offsets,
    }


async def chat_completion(started: StartedText) -> ChatCompletion:
    choices = await _collect_choices(started)
    return ChatCompletion(
        id=_id("chatcmpl-"),
        created=int(time.time()),
        model=started.entry.id,
        choices=[
            ChatChoice(
                index=index,
                message=_chat_message(choice),
                finish_reason=choice.finish_reason,
                logprobs=None if choice.tokens is None else ChatLogprobs(**_chat_logprobs(choice.tokens)),
            )
            for index, choice in enumerate(choices)
        ],
        usage=_usage(started),
    )


class TokenChunks:
    """Per-token stream chunks as JSON bytes, byte for byte what orjson makes of the dict
    `{**template, "choices": [choice]}` (ChatCompletionChunk / Completion shapes, which those models
    document): the constant head (id, object, created, model, the choice's index) is serialised
    once per stream and only the token's text per token. A pydantic model per token cost more than
    the rest of the gateway's per-token work together; a dict per token is then most of the rest.

    `field` opens the choice's text (`"delta":{"content":` or `"text":`), `close` ends it."""

    __slots__ = ("_close", "_field", "_heads", "_prefix")

    def __init__(self, template: dict[str, Any], *, field: bytes, close: bytes) -> None:
        self._prefix = orjson.dumps(template)[:-1] + b',"choices":['
        self._field = field
        self._close = close + b',"finish_reason":null,"logprobs":null}]}'
        self._heads: dict[int, bytes] = {}

    def text(self, index: int, text: str) -> bytes:
        """The chunk of one token's text, with no finish reason and no log probabilities."""
        head = self._heads.get(index)
        if head is None:
            head = self._heads[index] = b'%s{"index":%d,%s' % (self._prefix, index, self._field)
        return head + orjson.dumps(text) + self._close

    def choice(self, choice: dict[str, Any]) -> bytes:
        """The chunk of any one choice (log probabilities, tool calls)."""
        return self._prefix + orjson.dumps(choice) + b"]}"

    def modelled(self, index: int, rest: bytes) -> bytes:
        """A one-choice chunk as ChatCompletionChunk serialises it (its `"usage":null` too), the
        choice's fields after `index` being `rest`: a stream's opening and finishing chunks,
        without a pydantic model built and dumped for each (~10 µs a chunk)."""
        return b'%s{"index":%d,%s}],"usage":null}' % (self._prefix, index, rest)


# The rest of a chat choice's opening and finishing chunks (TokenChunks.modelled).
_CHAT_OPENING = b'"delta":{"role":"assistant","content":""},"finish_reason":null,"logprobs":null'
_CHAT_FINISH = b'"delta":{},"finish_reason":%s,"logprobs":null'


async def chat_chunks(
    started: StartedText, *, include_usage: bool
) -> AsyncIterator[list[ChatCompletionChunk | bytes]]:
    """Choices stream one after another (n > 1): each opens with its role and ends with its
    finish_reason, and every chunk names its choice's index. Token chunks come as JSON bytes
    (TokenChunks), the rest as models. Each list holds the chunks of the deltas that were ready
    together (the generation's batches): one write for the events of one upstream read."""
    ident, created, model = _id("chatcmpl-"), int(time.time()), started.entry.id
    template = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
    tokens = TokenChunks(template, field=b'"delta":{"content":', close=b"}")

    def opening(index: int) -> bytes:  # ChatDelta(role="assistant", content="") as a chunk model
        return tokens.modelled(index, _CHAT_OPENING)

    def finish(index: int, reason: str) -> bytes:  # ChatDelta() with the reason, as a chunk model
        return tokens.modelled(index, _CHAT_FINISH % orjson.dumps(reason))

    current, finished = 0, False
    yield [opening(0)]
    async for deltas in started.generation.batches():
        out: list[ChatCompletionChunk | bytes] = []
        for delta in deltas:
            if delta.index != current:
                current, finished = delta.index, False
                out.append(opening(current))
            if delta.text or delta.logprobs:
                if delta.logprobs is None:
                    out.append(tokens.text(current, delta.text))
                else:
                    choice = {
                        "index": current,
                        "delta": {"content": delta.text},
                        "finish_reason": None,
                        "logprobs": _chat_logprobs(delta.logprobs),
                    }
                    out.append(tokens.choice(choice))
            if delta.tool_calls:
                calls = {"tool_calls": chunk_tool_calls(delta.tool_calls)}
                out.append(
                    tokens.choice({"index": current, "delta": calls, "finish_reason": None, "logprobs": None})
                )
            if delta.finish_reason is not None:
                finished = True
                out.append(finish(current, delta.finish_reason))
        if out:
            yield out
    last: list[ChatCompletionChunk | bytes] = []
    if not finished:
        last.append(finish(current, started.generation.stats.finish_reason or "stop"))
    if include_usage:
        last.append(
            ChatCompletionChunk(id=ident, created=created, model=model, choices=[], usage=_usage(started))
        )
    if last:
        yield last


async def completion(started: StartedText) -> Completion:
    choices = await _collect_choices(started)
    return Completion(
        id=_id("cmpl-"),
        created=int(time.time()),
        model=started.entry.id,
        choices=[
            CompletionChoice(
                index=index,
                text="".join(choice.parts),
                finish_reason=choice.finish_reason,
                logprobs=None
                if choice.tokens is None
                else CompletionLogprobs(**_completion_logprobs(choice.tokens, 0)),
            )
            for index, choice in enumerate(choices)
        ],
        usage=_usage(started),
    )


async def completion_chunks(
    started: StartedText, *, include_usage: bool
) -> AsyncIterator[list[Completion | bytes]]:
    """Token chunks as JSON bytes (TokenChunks), the rest as models; a list per batch of deltas
    (as chat_chunks)."""
    ident, created, model = _id("cmpl-"), int(time.time()), started.entry.id
    template = {"id": ident, "object": "text_completion", "created": created, "model": model}
    tokens = TokenChunks(template, field=b'"text":', close=b"")

    def finish(index: int, reason: str) -> bytes:
        # What the Completion model makes of one CompletionChoice(index, text="", finish_reason),
        # without building it: the same keys in the same order, and no "usage" (it omits a None).
        return tokens.choice({"index": index, "text": "", "finish_reason": reason, "logprobs": None})

    current, offset, finished = 0, 0, False
    async for deltas in started.generation.batches():
        out: list[Completion | bytes] = []
        for delta in deltas:
            if delta.index != current:
                current, offset, finished = delta.index, 0, False
            if delta.text or delta.logprobs:
                logprobs = None
                if delta.logprobs is not None:
                    logprobs = _completion_logprobs(delta.logprobs, offset)
                    offset += len(delta.text)
                if logprobs is None:
                    out.append(tokens.text(current, delta.text))
                else:
                    choice = {
                        "index": current,
                        "text": delta.text,
                        "finish_reason": None,
                        "logprobs": logprobs,
                    }
                    out.append(tokens.choice(choice))
            if delta.finish_reason is not None:
                finished = True
                out.append(finish(current, delta.finish_reason))
        if out:
            yield out
    last: list[Completion | bytes] = []
    if not finished:
        last.append(finish(current, started.generation.stats.finish_reason or "stop"))
    if include_usage:
        last.append(Completion(id=ident, created=created, model=model, choices=[], usage=_usage(started)))
    if last:
        yield last
