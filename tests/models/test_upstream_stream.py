"""The upstream SSE decoder's reading of chunks that hold whole events (what engines send), beside
the line-by-line cases in test_remote.py: the same events, whatever the chunking."""

from __future__ import annotations

from batchin.models.base import Usage
from batchin.models.upstream_stream import StreamDecoder

EVENTS = [
    b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n',
    b'data: {"choices":[{"index":0,"delta":{"content":"b"},"finish_reason":"length"}]}\n\n',
    b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}\n\n',
    b"data: [DONE]\n\n",
]


def decoded(chunks: list[bytes]) -> tuple[list[object], bool, str | None, Usage | None]:
    decoder = StreamDecoder(chat=True)
    texts = [text for chunk in chunks for text in decoder.feed(chunk)] + decoder.end()
    return texts, decoder.done, decoder.finish_reason, decoder.usage


def test_an_event_per_chunk_and_all_events_in_one_chunk_read_the_same() -> None:
    expected = (["a", "b"], True, "length", Usage(5, 2))
    assert decoded(EVENTS) == expected
    assert decoded([b"".join(EVENTS)]) == expected
    assert decoded([EVENTS[0] + EVENTS[1][:9], EVENTS[1][9:] + EVENTS[2], EVENTS[3]]) == expected


def test_comments_and_event_lines_between_whole_events_are_read_line_by_line() -> None:
    body = b": keep-alive\n\n" + EVENTS[0] + b"event: message\n" + EVENTS[1] + b"".join(EVENTS[2:])
    assert decoded([body]) == (["a", "b"], True, "length", Usage(5, 2))


def test_a_data_line_without_the_space_is_still_an_event() -> None:
    assert decoded([b'data:{"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n'])[0] == ["x"]
