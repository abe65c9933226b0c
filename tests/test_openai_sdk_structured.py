"""Structured outputs as clients use them, against a live `batchin serve` on the embedded SmolLM2:
the openai SDK's `chat.completions.parse` and `responses.parse` with pydantic models, LangChain's
`with_structured_output`, and the SDK's view of logprobs and `n`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from tests.live_server import LiveServer, live_server

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"


class Colour(BaseModel):
    name: str = Field(max_length=12)
    warm: bool


class Palette(BaseModel):
    mood: Literal["calm", "bold", "dark"]
    colours: list[Colour] = Field(max_length=3)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("live-structured")) as server:
        yield server


def test_chat_completions_parse_returns_the_pydantic_object(live: LiveServer) -> None:
    with live.client() as client:
        completion = client.chat.completions.parse(
            model=MODEL,
            messages=[{"role": "user", "content": "Make a palette of two colours."}],
            response_format=Palette,
            max_tokens=200,
            temperature=0,
        )
    message = completion.choices[0].message
    assert isinstance(message.parsed, Palette)
    assert message.refusal is None
    assert Palette.model_validate_json(message.content or "") == message.parsed


def test_responses_parse_returns_the_pydantic_object(live: LiveServer) -> None:
    with live.client() as client:
        response = client.responses.parse(
            model=MODEL,
            input="Make a calm palette.",
            text_format=Palette,
            max_output_tokens=200,
            temperature=0,
        )
    assert isinstance(response.output_parsed, Palette)


def test_langchain_with_structured_output(live: LiveServer) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model=MODEL,
        base_url=f"{live.base_url}/v1",
        api_key=live.api_key,  # type: ignore[arg-type]
        temperature=0,
        max_completion_tokens=200,
        max_retries=0,
    )
    palette = llm.with_structured_output(Palette).invoke("Make a bold palette.")
    assert isinstance(palette, Palette)


def test_logprobs_and_n_through_the_sdk(live: LiveServer) -> None:
    with live.client() as client:
        completion = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Name a fruit."}],
            max_tokens=6,
            n=3,
            logprobs=True,
            top_logprobs=2,
            seed=3,
        )
    assert len(completion.choices) == 3
    for choice in completion.choices:
        assert choice.logprobs is not None
        content = choice.logprobs.content or []
        assert "".join(t.token for t in content) == choice.message.content
        assert all(t.logprob <= 0 for t in content)
    assert completion.usage is not None
    tokens = sum(len(c.logprobs.content or []) for c in completion.choices if c.logprobs)
    ended = sum(c.finish_reason == "stop" for c in completion.choices)  # the end token counts too
    assert completion.usage.completion_tokens == tokens + ended
