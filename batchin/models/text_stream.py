"""Pieces every local text engine needs between its tokens and a `TextDelta` stream: the model's own
chat template, UTF-8-safe incremental detokenising, stop strings that are never emitted, and the
context-length check."""

from __future__ import annotations

import codecs
import json
from datetime import datetime
from typing import Any

from jinja2 import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from batchin.errors import InvalidRequest
from batchin.models.base import ChatMessage, TokenLogprob

__all__ = ["ChatTemplate", "LogprobAligner", "StopMatcher", "Utf8Stream", "check_context"]


def _raise(message: str) -> None:
    raise InvalidRequest(f"the model's chat template refused the messages: {message}", param="messages")


def _tojson(value: Any, indent: int | None = None, **options: Any) -> str:
    """transformers' `tojson`: plain JSON. Jinja's own escapes <, > and & for HTML, which would
    show a model tool schemas it was never trained on."""
    return json.dumps(value, ensure_ascii=False, indent=indent, **options)


def _template_message(message: ChatMessage) -> dict[str, Any]:
    """A message as transformers hands it to a template: tool calls with their arguments as an
    object (templates write `arguments | tojson`), keys present only when set."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": _arguments(c.arguments)},
            }
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def _arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # not JSON: shown as written


class ChatTemplate:
    """A Hugging Face style Jinja chat template, rendered in a sandbox as transformers does."""

    def __init__(self, source: str, *, bos_token: str, eos_token: str) -> None:
        environment = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols], autoescape=False
        )
        environment.filters["tojson"] = _tojson
        self.source = source
        self._template = environment.from_string(source)
        self._bos = bos_token
        self._eos = eos_token

    def render(self, messages: tuple[ChatMessage, ...], *, tools: list[dict[str, Any]] | None = None) -> str:
        """`tools`: OpenAI's tool objects, for templates that show them to the model themselves."""
        payload = [_template_message(m) for m in messages]
        extra = {} if tools is None else {"tools": tools}
        try:
            return self._template.render(
                messages=payload,
                bos_token=self._bos,
                eos_token=self._eos,
                add_generation_prompt=True,
                raise_exception=_raise,
                strftime_now=lambda fmt: datetime.now().strftime(fmt),
                **extra,
            )
        except TemplateError as exc:
            raise InvalidRequest(f"the model's chat template failed: {exc}", param="messages") from exc


class Utf8Stream:
    """Bytes of token pieces in, whole characters out: a character split across tokens waits."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, piece: bytes) -> str:
        return self._decoder.decode(piece)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


class StopMatcher:
    """Holds back text that may be the start of a stop string, so a stop string is never emitted."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Text safe to emit now. After a stop string is seen, `stopped` is True and the rest is dropped."""
        if self.stopped:
            return ""
        if not self._stops:
            return text
        buffer = self._held + text
        cut = min((i for i in (buffer.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return buffer[:cut]
        keep = 0
        for stop in self._stops:
            for length in range(min(len(stop) - 1, len(buffer)), keep, -1):
                if buffer.endswith(stop[:length]):
                    keep = length
                    break
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        """At the end of generation, held text was not a stop string after all."""
        held, self._held = ("" if self.stopped else self._held), ""
        return held


class LogprobAligner:
    """Hands each token's log probability out with the delta whose text holds it, so the tokens of
    a generation concatenate to exactly its text: text that stop matching holds back releases its
    tokens later, a token cut by a stop string keeps only its released share, tokens past the end
    are dropped, and a token that began a character the generation never finished gets the
    replacement text the decoder flushed for it."""

    def __init__(self) -> None:
        self._pending: list[TokenLogprob] = []
        self._owed = ""  # released text whose token is still pending

    def add(self, token: TokenLogprob) -> None:
        self._pending.append(token)

    def release(self, text: str) -> tuple[TokenLogprob, ...]:
        """The tokens whose text lies within everything released so far (`text` is the new part)."""
        if text:
            self._owed += text
        out: list[TokenLogprob] = []
        pending = self._pending
        while pending and len(pending[0].token) <= len(self._owed):
            if not pending[0].token and len(pending) == 1:
                break  # the start of a character: the next token (or the end) completes it
            self._owed = self._owed[len(pending[0].token) :]
            out.append(pending.pop(0))
        return tuple(out)

    def finish(self, text: str) -> tuple[TokenLogprob, ...]:
        """The end (`text` is the last released part)."""
        out = list(self.release(text))
        if self._owed and self._pending:
            first = self._pending[0]
            out.append(TokenLogprob(self._owed, first.logprob, first.raw, first.top))
        self._pending, self._owed = [], ""
        return tuple(out)


def check_context(prompt_tokens: int, max_tokens: int, context_length: int, *, prompt_param: str) -> None:
    if max_tokens < 1:
        raise InvalidRequest("max_tokens must be at least 1", param="max_tokens")
    if prompt_tokens >= context_length:
        raise InvalidRequest(
            f"the prompt is {prompt_tokens} tokens; this model's context length is {context_length}",
            param=prompt_param,
        )
    if prompt_tokens + max_tokens > context_length:
        raise InvalidRequest(
            f"prompt ({prompt_tokens} tokens) + max_tokens ({max_tokens}) exceeds this model's context"
            f" length of {context_length}; lower max_tokens to at most {context_length - prompt_tokens}",
            param="max_tokens",
        )
