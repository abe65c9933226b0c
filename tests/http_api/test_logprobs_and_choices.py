"""Log probabilities, `n` choices and the penalties on the embedded SmolLM2 (llama.cpp in its worker
process), through the real app; the shapes validated against OpenAI's published OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from batchin.models.catalog import load_catalog
from batchin.models.llama_lib import close_devnull_at_exit
from batchin.models.weights import resolve_weights
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser, assert_error, bearer
from tests.openai_reference import response_schema, violations
from tests.text_fixtures import logs_of, sse_json

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
ASK = [{"role": "user", "content": "Write one sentence about the sea, with a café and an emoji."}]
STREAM = "text/event-stream"
# OpenAI's own legacy completion chunks carry `finish_reason: null`, which its schema does not allow.
NULL_FINISH_REASON = [
    "choices/0/finish_reason: None is not of type 'string'",
    "choices/0/finish_reason: None is not one of ['stop', 'length', 'content_filter']",
]


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user(credit_cents=1_000)


async def post(client: httpx2.AsyncClient, user: UserCreated, path: str, **body: Any) -> dict[str, Any]:
    response = await client.post(path, json={"model": MODEL, **body}, headers=bearer(user.api_key))
    assert response.status_code == 200, response.text
    assert not violations(response.json(), response_schema(path.removeprefix("/v1"), "post"))
    result: dict[str, Any] = response.json()
    return result


def assert_chat_logprobs(content: str, tokens: list[dict[str, Any]], top: int) -> None:
    assert "".join(t["token"] for t in tokens) == content
    for t in tokens:
        assert t["logprob"] <= 0
        alternatives = [a["logprob"] for a in t["top_logprobs"]]
        assert len(alternatives) == top
        assert alternatives == sorted(alternatives, reverse=True)
        assert all(lp <= 0 for lp in alternatives)
        assert alternatives[0] >= t["logprob"] - 1e-6  # nothing beats the most likely token
    # Each token's own bytes, joined, are the UTF-8 of the text (characters split across tokens too).
    assert bytes(b for t in tokens for b in t["bytes"]).decode() == content


async def test_chat_logprobs(client: httpx2.AsyncClient, user: UserCreated) -> None:
    body = await post(
        client,
        user,
        "/v1/chat/completions",
        messages=ASK,
        max_tokens=40,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
    )
    [choice] = body["choices"]
    tokens = choice["logprobs"]["content"]
    assert tokens
    assert_chat_logprobs(choice["message"]["content"], tokens, 3)
    # Greedy decoding takes the most likely token at every step.
    assert all(t["logprob"] == t["top_logprobs"][0]["logprob"] for t in tokens)


async def test_streamed_chat_logprobs_cover_the_streamed_text(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    response = await client.post(
        "/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": ASK,
            "max_tokens": 30,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": 2,
            "stop": [" sea"],
            "stream": True,
        },
        headers=bearer(user.api_key),
    )
    chunks = sse_json(response.text)
    for chunk in chunks:
        assert not violations(chunk, response_schema("/chat/completions", "post", content=STREAM))
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    tokens = [
        t for c in chunks if c["choices"][0]["logprobs"] for t in c["choices"][0]["logprobs"]["content"]
    ]
    assert " sea" not in text
    assert "".join(t["token"] for t in tokens) == text


async def test_completion_logprobs(client: httpx2.AsyncClient, user: UserCreated) -> None:
    body = await post(
        client, user, "/v1/completions", prompt="The capital of France is", max_tokens=8, logprobs=2
    )
    [choice] = body["choices"]
    logprobs = choice["logprobs"]
    assert "".join(logprobs["tokens"]) == choice["text"]
    assert all(lp <= 0 for lp in logprobs["token_logprobs"])
    assert all(len(top) <= 2 and all(lp <= 0 for lp in top.values()) for top in logprobs["top_logprobs"])
    offsets = [0]
    for token in logprobs["tokens"][:-1]:
        offsets.append(offsets[-1] + len(token))
    assert logprobs["text_offset"] == offsets


async def test_streamed_completion_logprobs(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await client.post(
        "/v1/completions",
        json={"model": MODEL, "prompt": "Once upon a time", "max_tokens": 10, "logprobs": 1, "stream": True},
        headers=bearer(user.api_key),
    )
    chunks = sse_json(response.text)
    for chunk in chunks[:-1]:
        assert violations(chunk, response_schema("/completions", "post")) == NULL_FINISH_REASON
    text = "".join(c["choices"][0]["text"] for c in chunks)
    tokens = [t for c in chunks if c["choices"][0]["logprobs"] for t in c["choices"][0]["logprobs"]["tokens"]]
    assert "".join(tokens) == text


async def test_n_gives_independent_choices_and_usage_counts_them_all(
    client: httpx2.AsyncClient, services: Services, user: UserCreated
) -> None:
    body = await post(client, user, "/v1/chat/completions", messages=ASK, max_tokens=6, n=3, seed=7)
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert len({c["message"]["content"] for c in body["choices"]}) > 1  # independent samples
    # Each choice that ran to max_tokens sampled exactly 6 tokens; usage adds up every choice's.
    assert all(c["finish_reason"] == "length" for c in body["choices"])
    assert body["usage"]["completion_tokens"] == 18
    [log] = await logs_of(services, user)
    assert (log.input_tokens, log.output_tokens) == (body["usage"]["prompt_tokens"], 18)
    again = await post(client, user, "/v1/chat/completions", messages=ASK, max_tokens=6, n=3, seed=7)
    assert [c["message"] for c in again["choices"]] == [c["message"] for c in body["choices"]]


async def test_n_with_logprobs_streamed(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await client.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": ASK, "max_tokens": 5, "n": 2, "logprobs": True, "stream": True},
        headers=bearer(user.api_key),
    )
    chunks = sse_json(response.text)
    for index in (0, 1):
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == index]
        text = "".join(c["delta"].get("content", "") for c in mine)
        tokens = [t["token"] for c in mine if c["logprobs"] for t in c["logprobs"]["content"]]
        assert "".join(tokens) == text
        assert mine[-1]["finish_reason"] == "length"


@pytest.fixture(scope="module")
def vocab() -> Iterator[Any]:
    """SmolLM2's tokenizer alone (no weights), to name token ids as logit_bias does."""
    from llama_cpp import Llama

    weights = load_catalog().get(MODEL)
    assert weights is not None
    assert weights.weights is not None
    llama = Llama(model_path=str(resolve_weights(weights.weights.path)), vocab_only=True, verbose=False)
    close_devnull_at_exit()
    yield llama
    llama.close()


async def test_logit_bias_forces_a_token_and_bans_another(
    client: httpx2.AsyncClient, user: UserCreated, vocab: Any
) -> None:
    [banana] = vocab.tokenize(b" banana", add_bos=False)
    forced = await post(
        client,
        user,
        "/v1/completions",
        prompt="My favourite fruit is",
        max_tokens=3,
        logit_bias={str(banana): 100},
    )
    assert forced["choices"][0]["text"] == " banana" * 3
    plain = await post(
        client,
        user,
        "/v1/completions",
        prompt="My favourite fruit is",
        max_tokens=1,
        temperature=0,
        logprobs=0,
    )
    [first] = vocab.tokenize(plain["choices"][0]["logprobs"]["tokens"][0].encode(), add_bos=False)
    banned = await post(
        client,
        user,
        "/v1/completions",
        prompt="My favourite fruit is",
        max_tokens=1,
        temperature=0,
        logit_bias={str(first): -100},
    )
    assert banned["choices"][0]["text"] != plain["choices"][0]["text"]


async def test_presence_penalty_changes_a_repetitive_answer(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    ask = [{"role": "user", "content": "Repeat the word 'apple' twenty times."}]
    plain = await post(client, user, "/v1/chat/completions", messages=ask, max_tokens=20, temperature=0)
    penalised = await post(
        client, user, "/v1/chat/completions", messages=ask, max_tokens=20, temperature=0, presence_penalty=2.0
    )
    text, other = plain["choices"][0]["message"]["content"], penalised["choices"][0]["message"]["content"]
    assert text != other
    assert other.lower().count("apple") < text.lower().count("apple")


async def test_a_logit_bias_key_that_is_no_token_is_400(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    for bias in ({"abc": 1}, {"999999999": 1}, {"5": 101}):
        response = await client.post(
            "/v1/chat/completions",
            json={"model": MODEL, "messages": ASK, "logit_bias": bias},
            headers=bearer(user.api_key),
        )
        assert assert_error(response, 400, "invalid_request")["param"] == "logit_bias", json.dumps(bias)
