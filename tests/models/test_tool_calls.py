"""Reading replies with tool calls (models/tool_calls.py): text held only while it may open a call,
calls turned into OpenAI's pieces however the text is split, repeated calls ending the reply, and
stop strings that never cut a call."""

from __future__ import annotations

import json

import pytest

from batchin.models.base import TextDelta, ToolCall, ToolCallDelta
from batchin.models.tool_calls import ReplyReader, ToolCallStream, assembled_calls

CALL = '{"name": "get_weather", "arguments": {"city": "Pa\\"ris}", "days": [1, {"n": 2}]}}\n</tool_call>'
ARGUMENTS = '{"city": "Pa\\"ris}", "days": [1, {"n": 2}]}'


def run(stream: ToolCallStream, text: str, step: int) -> tuple[str, list[ToolCallDelta]]:
    shown, pieces = "", []
    for at in range(0, len(text), step):
        more, calls = stream.feed(text[at : at + step])
        shown, pieces = shown + more, pieces + calls
    return shown + stream.finish(), pieces


@pytest.mark.parametrize("step", [1, 2, 5, 1000])
def test_a_call_is_read_the_same_however_it_is_split(step: int) -> None:
    stream = ToolCallStream(in_calls=True)
    shown, pieces = run(stream, CALL, step)
    assert shown == ""
    [call] = assembled_calls(pieces)
    assert (call.name, call.arguments) == ("get_weather", ARGUMENTS)
    assert call.id.startswith("call_")
    assert pieces[0].id == call.id
    assert pieces[0].name == "get_weather"
    assert all(p.id is None and p.name is None for p in pieces[1:])
    assert stream.completed == 1


def test_plain_text_passes_through_whole() -> None:
    stream = ToolCallStream(in_calls=False)
    text = 'The weather is <b>fine</b> and {"json": true} is text too.'
    assert run(stream, text, 3) == (text, [])
    assert not stream.triggered


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Let me look. <tool_call>\n{", "Let me look. "),
        ('  {"name": "get_weather"', ""),  # a bare call at the start, as small models write it
        ("<tool_call>", ""),
    ],
)
def test_an_opener_pauses_the_reader_for_the_runner(text: str, shown: str) -> None:
    stream = ToolCallStream(in_calls=False)
    seen = ""
    for char in text:
        seen += stream.feed(char)[0]
        if stream.triggered:
            break
    assert stream.triggered
    assert seen == shown == stream.shown
    stream.enter_calls()
    assert run(stream, CALL, 4)[1][0].name == "get_weather"


def test_a_partial_opener_is_held_then_shown_when_it_is_not_one() -> None:
    stream = ToolCallStream(in_calls=False)
    assert stream.feed("Use <tool_ca")[0] == "Use "
    assert stream.feed("se> tags")[0] == "<tool_case> tags"
    assert stream.feed("<tool")[0] == ""
    assert stream.finish() == "<tool"


def test_parallel_calls_get_their_own_index_and_id() -> None:
    second = CALL.replace("get_weather", "get_time").replace(ARGUMENTS, "{}")
    stream = ToolCallStream(in_calls=True)
    _shown, pieces = run(stream, f"{CALL}\n<tool_call>\n{second}", 3)
    calls = assembled_calls(pieces)
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", ARGUMENTS), ("get_time", "{}")]
    assert len({c.id for c in calls}) == 2
    assert {p.index for p in pieces} == {0, 1}
    assert stream.completed == 2


def test_a_repeated_call_is_dropped_and_ends_the_reply() -> None:
    spaced = CALL.replace('"days": [1', '"days":[1')  # the same arguments, written differently
    stream = ToolCallStream(in_calls=True)
    _, pieces = run(stream, f"{CALL}\n<tool_call>\n{spaced}\n<tool_call>\n", 7)
    assert [c.name for c in assembled_calls(pieces)] == ["get_weather"]
    assert stream.repeated
    assert stream.completed == 1


def test_an_unfinished_later_call_is_dropped_and_an_unfinished_first_one_kept() -> None:
    stream = ToolCallStream(in_calls=True)
    _, pieces = run(stream, f'{CALL}\n<tool_call>\n{{"name": "get_time", "arguments": {{"a', 5)
    assert [c.name for c in assembled_calls(pieces)] == ["get_weather"]
    assert stream.calls_whole  # what was passed on is whole calls: a reply of calls, not a cut one
    first = ToolCallStream(in_calls=True)
    _, pieces = run(first, '{"name": "get_weather", "arguments": {"city": "Pa', 5)
    assert assembled_calls(pieces)[0].arguments == '{"city": "Pa'
    assert not first.calls_whole


def test_stop_strings_end_text_but_never_cut_a_call() -> None:
    reader = ReplyReader(("\n",), ToolCallStream(in_calls=True))
    deltas = [reader.feed(char.encode()) for char in CALL]
    assert not reader.stopped
    pieces = [p for d in deltas if d is not None for p in d.tool_calls]
    assert assembled_calls(pieces)[0].arguments == ARGUMENTS
    text_reader = ReplyReader(("STOP",), ToolCallStream(in_calls=False))
    shown = [text_reader.feed(piece.encode()) for piece in ("Hello ", "ST", "OP <tool_call>")]
    assert "".join(d.text for d in shown if d is not None) == "Hello "
    assert text_reader.stopped


def test_text_held_for_a_stop_string_is_shown_when_a_call_opens() -> None:
    calls = ToolCallStream(in_calls=False)
    reader = ReplyReader(("\nObservation",), calls)
    first = reader.feed(b"Thinking\n")
    assert first is not None
    assert first.text == "Thinking"
    second = reader.feed(b"<tool_call>")
    assert second is not None
    assert second.text == "\n"
    assert calls.triggered


def test_a_character_split_across_tokens_waits() -> None:
    reader = ReplyReader(())
    euro = "€".encode()
    assert reader.feed(euro[:1]) is None
    assert reader.feed(euro[1:]) == TextDelta("€")


def test_assembled_calls_join_pieces_by_index() -> None:
    pieces = [
        ToolCallDelta(1, id="b", name="g"),
        ToolCallDelta(0, id="a", name="f", arguments='{"x"'),
        ToolCallDelta(1, arguments="{}"),
        ToolCallDelta(0, arguments=": 1}"),
    ]
    assert assembled_calls(pieces) == [ToolCall("a", "f", '{"x": 1}'), ToolCall("b", "g", "{}")]
    assert json.loads(assembled_calls(pieces)[0].arguments) == {"x": 1}
