"""Reading a local model's reply as it is generated: text, and tool calls in the Hermes format of
tool_prompt.py, turned into OpenAI's stream pieces (a call's id and name first, then fragments of
its arguments as they are written).

How a reply goes (tool_choice `auto`): the model writes freely; text is passed on, except what may
be the start of a call, which is held back until it is clear. A call starts with `<tool_call>`
anywhere, or with a bare `{"name"` as the very first thing (small models drop the tags). Then the
reader stops (`triggered`): the runner goes on from the opener under the grammar of the declared
functions (tool_grammar.py) and calls `enter_calls()`. With `required` or a named function the
runner writes the opener into the prompt itself, and the reader starts inside the calls.

Small models, allowed parallel calls, tend to repeat a call until they run out of tokens. So the
first call streams as it is written, and each further one is held until it is complete: a call
identical to an earlier one of the same reply (same name, same arguments) is dropped and ends the
reply (`repeated`), any other is passed on whole. A reply that runs out of tokens while writing a
later call ends with the calls before it (finish reason `tool_calls`, not `length`).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable

from batchin.models.base import TextDelta, ToolCall, ToolCallDelta
from batchin.models.text_stream import StopMatcher, Utf8Stream
from batchin.models.tool_prompt import CALL_CLOSE, CALL_OPEN

__all__ = ["ReplyReader", "ToolCallStream", "assembled_calls", "new_call_id"]

_BARE_OPEN = '{"name"'
_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*(?=\S)')


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


class ToolCallStream:
    """Text in, (text to show, tool-call pieces) out. States: `start` (nothing shown yet), `text`,
    `paused` (a call opener was seen; waiting for `enter_calls`), then per call `head`, `arguments`,
    `tail`, and `between` calls; `over` once a call was repeated."""

    def __init__(self, *, in_calls: bool) -> None:
        self._state = "head" if in_calls else "start"
        self._buffer = ""
        self._index = 0
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._out: list[ToolCallDelta] = []
        self._held: list[ToolCallDelta] = []  # pieces of a later call, until it is complete
        self._name = ""
        self._arguments_text = ""
        self._made: set[tuple[str, str]] = set()  # (name, arguments) of this reply's calls
        self.repeated = False  # the model repeated a call: the reply is over
        self.shown = ""  # all text passed on so far (the runner continues the prompt from it)
        self.completed = 0  # calls whose closing tag was written

    @property
    def triggered(self) -> bool:
        return self._state == "paused"

    @property
    def in_calls(self) -> bool:
        return self._state not in ("start", "text")

    @property
    def calls_whole(self) -> bool:
        """Everything passed on is whole calls: a reply cut short now ends with them (the call it
        was writing, a later one, is dropped), so it is a reply of tool calls, not a cut one."""
        if self.completed == 0:
            return False
        return self._state in ("between", "over") or (self._index > 0 and self._state != "paused")

    def enter_calls(self) -> None:
        """The opener has been written (by the runner); what follows is a call."""
        self._state, self._buffer = "head", ""

    def feed(self, text: str) -> tuple[str, list[ToolCallDelta]]:
        self._buffer += text
        shown = ""
        while True:
            before = (self._state, len(self._buffer))
            if self._state == "start":
                self._start()
            elif self._state == "text":
                shown += self._text()
            elif self._state == "head":
                self._head()
            elif self._state == "arguments":
                self._arguments()
            elif self._state == "tail":
                self._tail()
            elif self._state == "between":
                self._between()
            else:  # paused (the runner regenerates what follows the opener) or over
                self._buffer = ""
            if (self._state, len(self._buffer)) == before:
                break
        self.shown += shown
        out, self._out = self._out, []
        return shown, _merged(out)

    def finish(self) -> str:
        """The end of the reply: text held back as a possible opener was text after all. An
        unfinished first call stays as far as it streamed; an unfinished later one is dropped."""
        if self._state in ("start", "text"):
            held, self._buffer = self._buffer, ""
            self.shown += held
            return held
        return ""

    # -- states ------------------------------------------------------------------------------

    def _start(self) -> None:
        head = self._buffer.lstrip()
        if head.startswith((CALL_OPEN, _BARE_OPEN)):
            self._state, self._buffer = "paused", ""
        elif head and not (CALL_OPEN.startswith(head) or _BARE_OPEN.startswith(head)):
            self._state = "text"

    def _text(self) -> str:
        at = self._buffer.find(CALL_OPEN)
        if at >= 0:
            shown = self._buffer[:at]
            self._state, self._buffer = "paused", ""
            return shown
        longest = min(len(CALL_OPEN) - 1, len(self._buffer))
        keep = next((n for n in range(longest, 0, -1) if self._buffer.endswith(CALL_OPEN[:n])), 0)
        shown = self._buffer[: len(self._buffer) - keep]
        self._buffer = self._buffer[len(shown) :]
        return shown

    def _emit(self, piece: ToolCallDelta) -> None:
        (self._out if self._index == 0 else self._held).append(piece)

    def _head(self) -> None:
        match = _HEAD.match(self._buffer)
        if match is None:
            return
        self._name, self._arguments_text = match.group(1), ""
        self._emit(ToolCallDelta(self._index, id=new_call_id(), name=self._name))
        self._state, self._buffer = "arguments", self._buffer[match.end() :]
        self._depth, self._in_string, self._escaped = 0, False, False

    def _arguments(self) -> None:
        """Pass the arguments on up to the bracket that closes them (strings and escapes tracked)."""
        end = None
        for at, char in enumerate(self._buffer):
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
            elif char in "}]":
                self._depth -= 1
                if self._depth == 0:
                    end = at + 1
                    break
        piece = self._buffer if end is None else self._buffer[:end]
        if piece:
            self._arguments_text += piece
            self._emit(ToolCallDelta(self._index, arguments=piece))
        self._buffer = "" if end is None else self._buffer[end:]
        if end is not None:
            self._state = "tail"

    def _tail(self) -> None:
        at = self._buffer.find(CALL_CLOSE)
        if at < 0:
            return
        self._buffer = self._buffer[at + len(CALL_CLOSE) :]
        made = (self._name, _canonical(self._arguments_text))
        held, self._held = self._held, []
        if made in self._made:
            self._state, self.repeated = "over", True
            return
        self._made.add(made)
        self._out += held
        self.completed += 1
        self._state = "between"

    def _between(self) -> None:
        head = self._buffer.lstrip()
        if head.startswith(CALL_OPEN):
            self._index += 1
            self._state, self._buffer = "head", head[len(CALL_OPEN) :]
        elif not CALL_OPEN.startswith(head):
            self._buffer = ""  # nothing else may follow a call (the grammar ends the turn there)


def assembled_calls(pieces: Iterable[ToolCallDelta]) -> list[ToolCall]:
    """Stream pieces joined into whole calls, in index order (as the SDKs' stream helpers do)."""
    ids: dict[int, str] = {}
    names: dict[int, str] = {}
    arguments: dict[int, list[str]] = {}
    for piece in pieces:
        if piece.id is not None:
            ids.setdefault(piece.index, piece.id)
        if piece.name is not None:
            names.setdefault(piece.index, piece.name)
        arguments.setdefault(piece.index, []).append(piece.arguments)
    return [
        ToolCall(ids.get(i, f"call_{i}"), names.get(i, ""), "".join(arguments[i])) for i in sorted(arguments)
    ]


def _canonical(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), sort_keys=True)
    except ValueError:
        return arguments


def _merged(calls: list[ToolCallDelta]) -> list[ToolCallDelta]:
    """Consecutive argument fragments of one call as one piece."""
    out: list[ToolCallDelta] = []
    for call in calls:
        last = out[-1] if out else None
        if last is not None and last.index == call.index and call.id is None:
            out[-1] = ToolCallDelta(last.index, last.id, last.name, last.arguments + call.arguments)
        else:
            out.append(call)
    return out


class ReplyReader:
    """One reply's token pieces → deltas: whole characters (a character split across tokens
    waits), stop strings honoured in the text (never inside a tool call), tool calls read as
    they are written (`calls`, when the request has tools shown to the model)."""

    def __init__(self, stops: tuple[str, ...], calls: ToolCallStream | None = None) -> None:
        self._utf8 = Utf8Stream()
        self._stops = StopMatcher(stops)
        self.calls = calls
        self.decoded = ""  # the whole characters the last piece completed (a token's share of text)

    @property
    def stopped(self) -> bool:
        return self._stops.stopped

    def feed(self, piece: bytes) -> TextDelta | None:
        self.decoded = self._utf8.feed(piece)
        return self._delta(self.decoded)

    def restart(self) -> None:
        """The runner regenerates from the call opener: forget a partial character."""
        self._utf8 = Utf8Stream()
        if self.calls is not None:
            self.calls.enter_calls()

    def finish(self) -> TextDelta:
        """What is left at the end of the reply (the runner adds finish reason and usage)."""
        if self._stops.stopped:
            return TextDelta("")
        delta = self._delta(self._utf8.flush())
        text = delta.text if delta else ""
        calls = delta.tool_calls if delta else ()
        if self.calls is not None:
            text += self._stops.feed(self.calls.finish())
        if not self._stops.stopped:
            text += self._stops.flush()
        return TextDelta(text, tool_calls=calls)

    def _delta(self, text: str) -> TextDelta | None:
        if self._stops.stopped:
            return None
        calls: list[ToolCallDelta] = []
        if self.calls is not None:
            text, calls = self.calls.feed(text)
            if self.calls.in_calls:
                text = self._stops.feed(text) + self._stops.flush()  # text held for a stop string was text
            else:
                text = self._stops.feed(text)
        else:
            text = self._stops.feed(text)
        if text or calls:
            return TextDelta(text, tool_calls=tuple(calls))
        return None
