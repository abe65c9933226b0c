"""OpenAI's response shapes for a started text generation: whole objects, stream chunks, and the
typed event sequence of the Responses API. Chunks of one response share its id."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from batchin.core.serving.inference import StartedText
from batchin.models.base import TokenLogprob
from batchin.protocol.structured import ChatLogprobs, CompletionLogprobs
from batchin.protocol.text import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatDelta,
    ChatMessageOut,
    Completion,
    CompletionChoice,
    CompletionUsage,
    ResponseCreateRequest,
    ResponseObject,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseUsage,
)


def _id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


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
        if delta.finish_reason is not None:
            choice.finish_reason = delta.finish_reason
    return [choices[index] for index in sorted(choices)]


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
                message=ChatMessageOut(content="".join(choice.parts)),
                finish_reason=choice.finish_reason,
                logprobs=None if choice.tokens is None else ChatLogprobs(**_chat_logprobs(choice.tokens)),
            )
            for index, choice in enumerate(choices)
        ],
        usage=_usage(started),
    )


def _token_chunk(template: dict[str, Any], choice: dict[str, Any]) -> dict[str, Any]:
    # Per-token chunks are plain dicts shaped exactly like ChatCompletionChunk / Completion (those
    # models document them): a pydantic model per token costs more than the rest of the gateway's
    # per-token work together.
    return {**template, "choices": [choice]}


async def chat_chunks(
    started: StartedText, *, include_usage: bool
) -> AsyncIterator[ChatCompletionChunk | dict[str, Any]]:
    """Choices stream one after another (n > 1): each opens with its role and ends with its
    finish_reason, and every chunk names its choice's index."""
    ident, created, model = _id("chatcmpl-"), int(time.time()), started.entry.id

    def chunk(delta: ChatDelta, index: int, finish: str | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=ident,
            created=created,
            model=model,
            choices=[ChatChunkChoice(index=index, delta=delta, finish_reason=finish)],
        )

    template = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
    current, finished = 0, False
    yield chunk(ChatDelta(role="assistant", content=""), 0)
    async for delta in started.generation:
        if delta.index != current:
            current, finished = delta.index, False
            yield chunk(ChatDelta(role="assistant", content=""), current)
        if delta.text or delta.logprobs:
            logprobs = None if delta.logprobs is None else _chat_logprobs(delta.logprobs)
            choice = {
                "index": current,
                "delta": {"content": delta.text},
                "finish_reason": None,
                "logprobs": logprobs,
            }
            yield _token_chunk(template, choice)
        if delta.finish_reason is not None:
            finished = True
            yield chunk(ChatDelta(), current, delta.finish_reason)
    if not finished:
        yield chunk(ChatDelta(), current, started.generation.stats.finish_reason or "stop")
    if include_usage:
        yield ChatCompletionChunk(id=ident, created=created, model=model, choices=[], usage=_usage(started))


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
) -> AsyncIterator[Completion | dict[str, Any]]:
    ident, created, model = _id("cmpl-"), int(time.time()), started.entry.id
    template = {"id": ident, "object": "text_completion", "created": created, "model": model}

    def finish(index: int, reason: str) -> Completion:
        return Completion(
            id=ident,
            created=created,
            model=model,
            choices=[CompletionChoice(index=index, text="", finish_reason=reason)],
        )

    current, offset, finished = 0, 0, False
    async for delta in started.generation:
        if delta.index != current:
            current, offset, finished = delta.index, 0, False
        if delta.text or delta.logprobs:
            logprobs = None
            if delta.logprobs is not None:
                logprobs = _completion_logprobs(delta.logprobs, offset)
                offset += len(delta.text)
            choice = {"index": current, "text": delta.text, "finish_reason": None, "logprobs": logprobs}
            yield _token_chunk(template, choice)
        if delta.finish_reason is not None:
            finished = True
            yield finish(current, delta.finish_reason)
    if not finished:
        yield finish(current, started.generation.stats.finish_reason or "stop")
    if include_usage:
        yield Completion(id=ident, created=created, model=model, choices=[], usage=_usage(started))


class ResponseBuilder:
    """Builds the response object as it grows, for both the plain and the streamed form."""

    def __init__(self, started: StartedText, request: ResponseCreateRequest) -> None:
        self.started = started
        self.request = request
        self.id = _id("resp_")
        self.message_id = _id("msg_")
        self.created_at = int(time.time())
        self.text = ""

    def message(self, status: str) -> ResponseOutputMessage:
        content = [ResponseOutputText(text=self.text)] if status != "in_progress" else []
        return ResponseOutputMessage(id=self.message_id, status=status, content=content)

    def response(self, *, done: bool) -> ResponseObject:
        stats = self.started.generation.stats
        incomplete = done and stats.finish_reason == "length"
        status = "in_progress" if not done else ("incomplete" if incomplete else "completed")
        return ResponseObject(
            id=self.id,
            created_at=self.created_at,
            status=status,
            model=self.started.entry.id,
            output=[self.message("incomplete" if incomplete else "completed")] if done else [],
            usage=ResponseUsage(
                input_tokens=stats.prompt_tokens,
                output_tokens=stats.completion_tokens,
                total_tokens=stats.prompt_tokens + stats.completion_tokens,
            )
            if done
            else None,
            instructions=self.request.instructions,
            max_output_tokens=self.request.max_output_tokens,
            temperature=self.request.temperature,
            top_p=self.request.top_p,
            metadata=self.request.metadata or {},
            incomplete_details={"reason": "max_output_tokens"} if incomplete else None,
            text=self.request.echoed_text(),
        )


async def response_object(started: StartedText, request: ResponseCreateRequest) -> ResponseObject:
    builder = ResponseBuilder(started, request)
    builder.text = await collect_text(started)
    return builder.response(done=True)


async def response_events(
    started: StartedText, request: ResponseCreateRequest
) -> AsyncIterator[dict[str, Any]]:
    """The typed event sequence the openai SDK parses, each with its sequence_number."""
    b = ResponseBuilder(started, request)
    sequence = 0

    def event(kind: str, **fields: Any) -> dict[str, Any]:
        nonlocal sequence
        sequence += 1
        return {"type": kind, "sequence_number": sequence - 1, **fields}

    where = {"item_id": b.message_id, "output_index": 0, "content_index": 0}
    empty_part = ResponseOutputText(text="").model_dump(mode="json")
    yield event("response.created", response=b.response(done=False).model_dump(mode="json"))
    yield event("response.in_progress", response=b.response(done=False).model_dump(mode="json"))
    yield event(
        "response.output_item.added", output_index=0, item=b.message("in_progress").model_dump(mode="json")
    )
    yield event("response.content_part.added", **where, part=empty_part)
    async for delta in started.generation:
        if delta.text:
            b.text += delta.text
            yield event("response.output_text.delta", **where, delta=delta.text, logprobs=[])
    final = b.response(done=True)
    part = ResponseOutputText(text=b.text).model_dump(mode="json")
    yield event("response.output_text.done", **where, text=b.text, logprobs=[])
    yield event("response.content_part.done", **where, part=part)
    yield event("response.output_item.done", output_index=0, item=final.output[0].model_dump(mode="json"))
    kind = "response.incomplete" if final.status == "incomplete" else "response.completed"
    yield event(kind, response=final.model_dump(mode="json"))
