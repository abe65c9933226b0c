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


@pytest.mark.parametrize("index", [0, 1, 12])
@pytest.mark.parametrize("model", ["m/x", 'ünï😀 \u2028 " \\ \x01'])
def test_a_chat_streams_opening_and_finishing_chunks_are_the_models_bytes(index: int, model: str) -> None:
    from batchin.core.serving.text_serving import _CHAT_FINISH, _CHAT_OPENING
    from batchin.protocol.text import ChatChunkChoice, ChatDelta

    head = {"id": "chatcmpl-1", "created": 1700000000, "model": model}
    template = {
        "id": head["id"],
        "object": "chat.completion.chunk",
        "created": head["created"],
        "model": model,
    }
    chunks = TokenChunks(template, field=b'"delta":{"content":', close=b"}")
    opening = ChatChunkChoice(index=index, delta=ChatDelta(role="assistant", content=""))
    expected = ChatCompletionChunk(**head, choices=[opening]).model_dump_json(exclude_none=False)
    assert chunks.modelled(index, _CHAT_OPENING) == expected.encode()
    for reason in ("stop", "length", "tool_calls"):
        finish = ChatChunkChoice(index=index, delta=ChatDelta(), finish_reason=reason)
        expected = ChatCompletionChunk(**head, choices=[finish]).model_dump_json(exclude_none=False)
        assert chunks.modelled(index, _CHAT_FINISH % orjson.dumps(reason)) == expected.encode()


@pytest.mark.parametrize("reason", ["stop", "length"])
def test_a_completion_streams_finishing_chunk_is_the_models_bytes(reason: str) -> None:
    from batchin.protocol.text import CompletionChoice

    template = {"id": "cmpl-1", "object": "text_completion", "created": 5, "model": "ünï"}
    chunks = TokenChunks(template, field=b'"text":', close=b"")
    choice = {"index": 2, "text": "", "finish_reason": reason, "logprobs": None}
    model = Completion(
        id="cmpl-1",
        created=5,
        model="ünï",
        choices=[CompletionChoice(index=2, text="", finish_reason=reason)],
    )
    assert chunks.choice(choice) == model.model_dump_json(exclude_none=False).encode()
