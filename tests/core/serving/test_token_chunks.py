"""Per-token stream chunks serialised from a head made once (TokenChunks): byte for byte what
orjson makes of the chunk's dict, which is what the stream sent before, and valid as the chunk
models the OpenAI SDK reads."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from batchin.core.serving.text_serving import TokenChunks
from batchin.protocol.text import ChatCompletionChunk, Completion

TEXTS = ["Hello", "", " world", 'quote " and \\ slash', "line\nbreak", "\u2028\u2029", "ünï😀", "\x00\x1f"]


def _chat_dict(template: dict[str, Any], index: int, text: str) -> dict[str, Any]:
    choice = {"index": index, "delta": {"content": text}, "finish_reason": None, "logprobs": None}
    return {**template, "choices": [choice]}


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("index", [0, 1, 12])
def test_chat_token_chunks_are_the_dicts_bytes(text: str, index: int) -> None:
    template = {
        "id": "chatcmpl-ab\u2028c",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "m/x",
    }
    chunks = TokenChunks(template, field=b'"delta":{"content":', close=b"}")
    made = chunks.text(index, text)
    assert made == orjson.dumps(_chat_dict(template, index, text))
    assert chunks.text(index, text) == made  # the cached head gives the same bytes
    ChatCompletionChunk.model_validate_json(made)


@pytest.mark.parametrize("text", TEXTS)
def test_completion_token_chunks_are_the_dicts_bytes(text: str) -> None:
    template = {"id": "cmpl-1", "object": "text_completion", "created": 5, "model": "m"}
    chunks = TokenChunks(template, field=b'"text":', close=b"")
    choice = {"index": 3, "text": text, "finish_reason": None, "logprobs": None}
    assert chunks.text(3, text) == orjson.dumps({**template, "choices": [choice]})
    assert chunks.choice(choice) == orjson.dumps({**template, "choices": [choice]})
    Completion.model_validate_json(chunks.text(3, text))
