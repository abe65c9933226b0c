"""TextDelta, made once per token through its own __init__: still a frozen value object."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from batchin.models.base import TextDelta, ToolCallDelta, Usage


def test_text_delta_is_a_frozen_value() -> None:
    delta = TextDelta("hi", "stop", Usage(3, 1), None, 0, (ToolCallDelta(0, "call-1", "f"),))
    assert delta == TextDelta("hi", finish_reason="stop", usage=Usage(3, 1), tool_calls=delta.tool_calls)
    assert hash(delta) == hash(TextDelta("hi", "stop", Usage(3, 1), None, 0, delta.tool_calls))
    assert TextDelta("x") == TextDelta("x", None, None, None, 0, ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        delta.text = "changed"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(delta)) == delta  # crosses the engine workers' pipes
    assert dataclasses.replace(delta, text="other").text == "other"


def test_of_choice_is_replace_of_the_index() -> None:
    delta = TextDelta("hi", "length", Usage(3, 1), None, 0, ())
    assert delta.of_choice(2) == dataclasses.replace(delta, index=2)
    assert delta.index == 0
