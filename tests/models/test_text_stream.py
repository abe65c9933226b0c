from __future__ import annotations

import pytest

from batchin.errors import InvalidRequest
from batchin.models.base import ChatMessage, TokenLogprob
from batchin.models.text_stream import ChatTemplate, LogprobAligner, StopMatcher, Utf8Stream, check_context


def _run(matcher: StopMatcher, pieces: list[str]) -> str:
    out = "".join(matcher.feed(piece) for piece in pieces)
    return out + matcher.flush()


def test_stop_string_split_across_pieces_is_not_emitted() -> None:
    matcher = StopMatcher(("END",))
    assert _run(matcher, ["hello E", "N", "D world"]) == "hello "
    assert matcher.stopped


def test_partial_stop_prefix_is_released_when_it_turns_out_not_to_be_one() -> None:
    matcher = StopMatcher(("END",))
    assert matcher.feed("abc EN") == "abc "
    assert matcher.feed("x") == "ENx"
    assert not matcher.stopped


def test_held_text_is_flushed_at_the_end() -> None:
    matcher = StopMatcher(("END",))
    assert _run(matcher, ["abc E"]) == "abc E"


def test_earliest_of_several_stops_wins() -> None:
    assert _run(StopMatcher(("cd", "b")), ["abcd"]) == "a"


def test_no_stops_passes_text_through() -> None:
    assert StopMatcher(()).feed("a\nb") == "a\nb"


def test_utf8_character_split_across_tokens_waits_for_its_last_byte() -> None:
    stream = Utf8Stream()
    data = "é€".encode()
    assert stream.feed(data[:1]) == ""
    assert stream.feed(data[1:3]) == "é"
    assert stream.feed(data[3:]) == "€"
    assert stream.flush() == ""


def test_chat_template_renders_messages_with_generation_prompt() -> None:
    template = ChatTemplate(
        "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}",
        bos_token="<s>",
        eos_token="</s>",
    )
    assert template.render((ChatMessage("user", "hi"),)) == "<s><user>hi</s><assistant>"


def test_chat_template_exception_becomes_invalid_request() -> None:
    template = ChatTemplate("{{ raise_exception('roles must alternate') }}", bos_token="", eos_token="")
    with pytest.raises(InvalidRequest, match="roles must alternate") as caught:
        template.render((ChatMessage("user", "hi"),))
    assert caught.value.param == "messages"


def test_context_overflow_blames_max_tokens_when_the_prompt_fits() -> None:
    with pytest.raises(InvalidRequest, match="lower max_tokens to at most 60") as caught:
        check_context(40, 61, 100, prompt_param="messages")
    assert caught.value.param == "max_tokens"


def test_context_overflow_blames_the_prompt_when_it_alone_is_too_long() -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_context(100, 1, 100, prompt_param="messages")
    assert caught.value.param == "messages"


def test_context_exactly_full_is_allowed() -> None:
    check_context(40, 60, 100, prompt_param="prompt")


# --- LogprobAligner --------------------------------------------------------------------------------


def _token(text: str, raw: bytes | None = None) -> TokenLogprob:
    return TokenLogprob(text, -0.5, text.encode() if raw is None else raw)


def test_logprobs_go_out_with_the_text_that_holds_them_and_a_stop_cuts_them() -> None:
    aligner, stops = LogprobAligner(), StopMatcher(("END",))
    released: list[TokenLogprob] = []
    text = ""
    for piece in ["Hi", " E", "N", "D", " more"]:
        aligner.add(_token(piece))
        out = stops.feed(piece)
        text += out
        released += aligner.release(out)
        if stops.stopped:
            break
    released += aligner.finish("")
    assert text == "Hi "
    assert [t.token for t in released] == ["Hi", " "]  # " E" keeps its released share


def test_a_character_split_across_tokens_goes_to_the_token_that_completes_it() -> None:
    aligner, utf8 = LogprobAligner(), Utf8Stream()
    released: list[TokenLogprob] = []
    for raw in ["é".encode()[:1], "é".encode()[1:] + b"!"]:
        decoded = utf8.feed(raw)
        aligner.add(_token(decoded, raw))
        released += aligner.release(decoded)
    released += aligner.finish(utf8.flush())
    assert [t.token for t in released] == ["", "é!"]
    assert b"".join(t.raw for t in released) == "é!".encode()


def test_a_character_the_generation_never_finished_keeps_its_replacement_text() -> None:
    aligner, utf8 = LogprobAligner(), Utf8Stream()
    raw = "☕".encode()[:2]
    aligner.add(_token(utf8.feed(raw), raw))
    released = list(aligner.release(""))
    tail = utf8.flush()
    released += aligner.finish(tail)
    assert "".join(t.token for t in released) == tail
    assert [t.raw for t in released] == [raw]
