"""Reading an OpenAI-compatible SSE stream (chat or legacy completions) into text and usage.

Fed the body's raw bytes as they arrive (any chunking: it keeps a partial line for the next
chunk), so the runner stays in charge of the connection and of closing it. Lines are handled as
bytes and event data goes to orjson undecoded: per event that is the cheapest path, and the
gateway does this for every token of every stream. Blank lines end an event, as the SSE spec says.
What upstreams send, in order: content chunks, a chunk with `finish_reason`, with
`stream_options.include_usage` a chunk with `choices: []` and `usage`, then `data: [DONE]`. Some
engines put usage on every chunk; the last one seen wins.
"""

from __future__ import annotations

from typing import Any

import orjson

from batchin.errors import ServiceUnavailable
from batchin.models.base import TextDelta, ToolCallDelta, Usage

__all__ = ["FINISH_REASONS", "StreamDecoder"]

# Bytes as ints: `byte in data` is then a memchr (~0.07 µs over an event), a one-byte `bytes`
# needle the general search (~0.4 µs).
_CR, _LF = 13, 10

# Engines name the end of generation differently; core speaks OpenAI's names.
FINISH_REASONS = {"length": "length", "content_filter": "content_filter", "tool_calls": "tool_calls"}


class StreamDecoder:
    __slots__ = ("_chat", "_data", "_event", "_pending", "deltas", "done", "finish_reason", "usage")

    def __init__(self, *, chat: bool) -> None:
        self._chat = chat
        self._data: list[bytes] = []
        self._event = b""
        self._pending = b""  # an incomplete last line, waiting for the next chunk
        self.deltas = 0  # content deltas seen: the completion-token count when usage is missing
        self.done = False  # `[DONE]` arrived
        self.finish_reason: str | None = None
        self.usage: Usage | None = None

    @property
    def complete(self) -> bool:
        """The generation ended normally (some engines omit `[DONE]` after the finish chunk)."""
        return self.done or self.finish_reason is not None

    def feed(self, chunk: bytes) -> list[str | TextDelta]:
        """Take the next bytes of the body; returns the content of the events they completed: a
        text, or a delta when the event carries tool-call pieces."""
        if self._pending:
            chunk = self._pending + chunk
        elif (
            chunk[:6] == b"data: "
            and chunk.find(_LF) == len(chunk) - 2
            and chunk[-1:] == b"\n"
            and _CR not in chunk
            and not self._data
            and not self._event
        ):
            # The commonest chunk by far: exactly one whole event of one data line.
            text = self._dispatch_data(chunk[6:-2], b"")
            return [text] if text else []
        texts: list[str | TextDelta] = []
        if self._data or self._event or _CR in chunk:
            lines = chunk.split(b"\n")
        else:
            # What engines send: events of one `data: ` line each, LF line ends, an event per
            # chunk or several. Split at the blank lines, an event is one slice and one dispatch
            # instead of two lines through `_line`; anything else in a block (comments, `event:`,
            # several data lines) is read line by line, as are the lines after the last blank one.
            *blocks, rest = chunk.split(b"\n\n")
            for block in blocks:
                if block[:6] == b"data: " and _LF not in block and not self._event:
                    text = self._dispatch_data(block[6:], b"")
                    if text:
                        texts.append(text)
                else:
                    texts += self._lines([*block.split(b"\n"), b""])
            lines = rest.split(b"\n")
        self._pending = lines.pop()
        if lines:
            texts += self._lines(lines)
        return texts

    def _lines(self, lines: list[bytes]) -> list[str | TextDelta]:
        return [text for text in map(self._line, lines) if text]

    def end(self) -> list[str | TextDelta]:
        """The body ended: take an unterminated last line and an event no blank line ended."""
        pending, self._pending = self._pending, b""
        texts = [self._line(pending) if pending else None, self._dispatch()]
        return [text for text in texts if text]

    def final(self, estimated_prompt_tokens: int) -> TextDelta:
        """The last delta. Usage is the upstream's, exactly; when it sent none, the prompt
        estimate and one completion token per content delta (engines stream about one token per
        delta, so this is close but not exact)."""
        usage = self.usage or Usage(estimated_prompt_tokens, self.deltas)
        return TextDelta("", finish_reason=self.finish_reason or "stop", usage=usage)

    def _line(self, line: bytes) -> str | TextDelta | None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            return self._dispatch()
        if line.startswith(b"data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(b" ") else value)
        elif line.startswith(b"event:"):
            self._event = line[6:].strip()
        return None  # comments (":" keep-alives), id: and retry: carry nothing for us

    def _dispatch(self) -> str | TextDelta | None:
        if not self._data:
            return None
        data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        event, self._event = self._event, b""
        self._data.clear()
        return self._dispatch_data(data, event)

    def _dispatch_data(self, data: bytes, event: bytes) -> str | TextDelta | None:
        if data == b"[DONE]":
            self.done = True
            return None
        try:
            chunk = orjson.loads(data)  # also refuses invalid UTF-8
        except orjson.JSONDecodeError as exc:
            raise ServiceUnavailable("The upstream sent an unreadable stream event.") from exc
        if not isinstance(chunk, dict):
            raise ServiceUnavailable("The upstream sent an unreadable stream event.")
        if event == b"error" or "error" in chunk:
            raise ServiceUnavailable(f"The upstream failed mid-stream: {_error_message(chunk)}")
        return self._take(chunk)

    def _take(self, chunk: dict[str, Any]) -> str | TextDelta | None:
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        text: str | None = None
        calls: tuple[ToolCallDelta, ...] = ()
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:  # we ask for n=1; ignore anything else
                continue
            if self._chat:
                delta = choice.get("delta") or {}
                text = delta.get("content")
                if delta.get("tool_calls"):
                    calls = _tool_call_pieces(delta["tool_calls"])
            else:
                text = choice.get("text")
            reason = choice.get("finish_reason")
            if reason:
                self.finish_reason = FINISH_REASONS.get(reason, "stop")
        if calls:
            self.deltas += 1
            return TextDelta(str(text or ""), tool_calls=calls)
        if text:
            self.deltas += 1
            return str(text)
        return None


def _error_message(chunk: dict[str, Any]) -> str:
    error = chunk.get("error", chunk)
    if isinstance(error, dict):
        return str(error.get("message") or "unknown error")
    return str(error)


def _tool_call_pieces(pieces: Any) -> tuple[ToolCallDelta, ...]:
    """An upstream's `delta.tool_calls`, piece for piece (it already streams OpenAI's shape)."""
    out = []
    for piece in pieces:
        function = piece.get("function") or {}
        name, call_id = function.get("name"), piece.get("id")
        out.append(
            ToolCallDelta(
                int(piece.get("index") or 0),
                id=str(call_id) if call_id else None,
                name=str(name) if name else None,
                arguments=str(function.get("arguments") or ""),
            )
        )
    return tuple(out)
