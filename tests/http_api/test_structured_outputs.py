"""Structured outputs on the embedded SmolLM2 (llama.cpp, in its worker process), through the real
app: `response_format` json_object and json_schema constrained by a grammar, the Responses API's
`text.format`, refusals of what a grammar cannot enforce, and `/v1/models` capabilities."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from jsonschema import Draft202012Validator

from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser, assert_error, bearer
from tests.openai_reference import response_schema, violations
from tests.text_fixtures import logs_of

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"

# An enum and an array of objects nested in the answer, every string and list bounded so that a
# sampled answer always fits in max_tokens.
PET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 10},
        "species": {"type": "string", "enum": ["cat", "dog", "parrot"]},
        "toys": {
            "type": "array",
            "maxItems": 2,
            "items": {
                "type": "object",
                "properties": {
                    "toy": {"type": "string", "maxLength": 8},
                    "colours": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 2,
                        "items": {"type": "string", "enum": ["red", "green", "blue"]},
                    },
                },
                "required": ["toy", "colours"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["name", "species", "toys"],
    "additionalProperties": False,
}
PET_FORMAT = {"type": "json_schema", "json_schema": {"name": "pet", "schema": PET_SCHEMA, "strict": True}}
ASK = [{"role": "user", "content": "Describe a pet and its toys."}]


@pytest.fixture
def backend() -> str:
    return "sqlite"  # what the engine writes does not depend on the store


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user(credit_cents=1_000)


async def chat(client: httpx2.AsyncClient, user: UserCreated, **body: Any) -> httpx2.Response:
    return await client.post(
        "/v1/chat/completions", json={"model": MODEL, "messages": ASK, **body}, headers=bearer(user.api_key)
    )


async def test_json_object_output_parses(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await chat(
        client,
        user,
        messages=[{"role": "user", "content": "Give a JSON object with a city and its country."}],
        response_format={"type": "json_object"},
        max_tokens=200,
        temperature=0,
    )
    assert response.status_code == 200, response.text
    [choice] = response.json()["choices"]
    assert choice["finish_reason"] == "stop"
    assert isinstance(json.loads(choice["message"]["content"]), dict)


@pytest.mark.timeout(1200)  # 20 generations: minutes on a busy 2-core machine
async def test_a_schema_with_an_enum_and_a_nested_array_is_obeyed_over_20_seeded_runs(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    validator = Draft202012Validator(PET_SCHEMA)
    answers = []
    for seed in range(20):
        response = await chat(client, user, response_format=PET_FORMAT, max_tokens=200, seed=seed)
        assert response.status_code == 200, response.text
        [choice] = response.json()["choices"]
        assert choice["finish_reason"] == "stop", choice
        answer = json.loads(choice["message"]["content"])
        assert not list(validator.iter_errors(answer)), (seed, answer)
        answers.append(answer)
    assert len({json.dumps(a) for a in answers}) > 1  # sampled, not one fixed answer


async def test_the_responses_api_text_format_is_obeyed_and_echoed(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    fmt = {"type": "json_schema", "name": "pet", "schema": PET_SCHEMA, "strict": True}
    response = await client.post(
        "/v1/responses",
        json={"model": MODEL, "input": "Describe a pet.", "text": {"format": fmt}, "max_output_tokens": 300},
        headers=bearer(user.api_key),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed"
    assert body["text"] == {"format": fmt}
    answer = json.loads(body["output"][0]["content"][0]["text"])
    assert not list(Draft202012Validator(PET_SCHEMA).iter_errors(answer))
    assert not violations(body, response_schema("/responses", "post"))


async def test_a_streamed_constrained_answer_is_the_same_json(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    whole = await chat(client, user, response_format=PET_FORMAT, max_tokens=300, temperature=0)
    streamed = await chat(
        client, user, response_format=PET_FORMAT, max_tokens=300, temperature=0, stream=True
    )
    text = "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content", "")
        for line in streamed.text.splitlines()
        if line.startswith("data: {")
    )
    assert text == whole.json()["choices"][0]["message"]["content"]
    json.loads(text)


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}}, "'minimum'"),
        ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "'uniqueItems'"),
        ({"type": "object", "properties": {"id": {"type": "string", "pattern": "[a-z]+"}}}, "anchored"),
        ({"type": "strng"}, "Invalid JSON schema"),
    ],
)
async def test_a_schema_the_grammar_cannot_enforce_is_400_naming_what(
    client: httpx2.AsyncClient, services: Services, user: UserCreated, schema: dict[str, Any], named: str
) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    error = assert_error(await chat(client, user, response_format=fmt), 400, "invalid_request")
    assert error["param"] == "response_format"
    assert named in error["message"]
    assert await logs_of(services, user) == []


async def test_an_unknown_format_type_is_400(client: httpx2.AsyncClient, user: UserCreated) -> None:
    error = assert_error(await chat(client, user, response_format={"type": "xml"}), 400, "invalid_request")
    assert str(error["param"]).startswith("response_format")


async def test_the_responses_api_names_text_format_in_its_refusal(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    fmt = {"type": "json_schema", "name": "x", "schema": {"type": "number", "multipleOf": 3}}
    response = await client.post(
        "/v1/responses",
        json={"model": MODEL, "input": "A number", "text": {"format": fmt}},
        headers=bearer(user.api_key),
    )
    error = assert_error(response, 400, "invalid_request")
    assert error["param"] == "text.format"
    assert "'multipleOf'" in error["message"]


async def test_models_list_their_capabilities(client: httpx2.AsyncClient) -> None:
    cards = {card["id"]: card for card in (await client.get("/v1/models")).json()["data"]}
    assert {"json_schema", "logprobs", "penalties"} <= set(cards[MODEL]["capabilities"])
    assert cards["all-MiniLM-L6-v2"]["capabilities"] == []
