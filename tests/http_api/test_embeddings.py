"""/v1/embeddings through the real ASGI app on the embedded models: shapes, base64, dimensions,
usage from the model's tokenizer, exact billing, receipt headers, and refusals that bill nothing."""

from __future__ import annotations

import base64
from typing import Any

import httpx2
import numpy as np
import orjson
import pytest

from batchin.core.billing.money import cost_per_million
from batchin.models.embeddings import EmbeddingRunner
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.audio_fixtures import E5, E5_PER_1M, MINILM, MINILM_PER_1M, WHISPER_TINY_EN
from tests.conftest import MakeUser, assert_error, bearer
from tests.served_receipts import assert_served_receipt
from tests.text_fixtures import balance_units, logs_of

pytestmark = pytest.mark.slow

TEXTS = ["The cat sat on the mat.", "Embeddings map text to vectors.", "Bonjour tout le monde"]


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user(credit_cents=1_000)


async def embed(client: httpx2.AsyncClient, user: UserCreated, **body: Any) -> httpx2.Response:
    return await client.post("/v1/embeddings", json={"model": MINILM, **body}, headers=bearer(user.api_key))


async def token_counts(services: Services, model: str, texts: list[str]) -> list[int]:
    runner = await services.registry.runner(model)
    assert isinstance(runner, EmbeddingRunner)
    return await runner.count_tokens(texts)


async def test_an_array_gives_one_vector_per_input_in_order(
    client: httpx2.AsyncClient, user: UserCreated, services: Services
) -> None:
    response = await embed(client, user, input=TEXTS, encoding_format="float")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    assert body["model"] == MINILM
    assert [(d["object"], d["index"], len(d["embedding"])) for d in body["data"]] == [
        ("embedding", i, 384) for i in range(3)
    ]
    tokens = sum(await token_counts(services, MINILM, TEXTS))
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


async def test_the_vectors_are_the_engines(
    client: httpx2.AsyncClient, user: UserCreated, services: Services
) -> None:
    response = await embed(client, user, input=TEXTS, encoding_format="float")
    served = np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32)
    runner = await services.registry.runner(MINILM)
    assert np.allclose(served, await runner.embed(TEXTS), atol=1e-6)


async def test_a_string_gives_one_vector(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await embed(client, user, input="hello world", encoding_format="float")
    assert [d["index"] for d in response.json()["data"]] == [0]
    assert response.json()["usage"]["prompt_tokens"] == 4


async def test_base64_decodes_to_the_float_output(client: httpx2.AsyncClient, user: UserCreated) -> None:
    floats = (await embed(client, user, input=TEXTS, encoding_format="float")).json()
    encoded = (await embed(client, user, input=TEXTS, encoding_format="base64")).json()
    for as_float, as_b64 in zip(floats["data"], encoded["data"], strict=True):
        decoded = np.frombuffer(base64.b64decode(as_b64["embedding"]), dtype="<f4")
        assert np.array_equal(decoded, np.array(as_float["embedding"], dtype=np.float32))
    assert encoded["usage"] == floats["usage"]


async def test_the_native_dimensions_are_accepted(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await embed(client, user, input="x y", dimensions=384, encoding_format="float")
    assert len(response.json()["data"][0]["embedding"]) == 384


async def test_shortening_a_model_not_trained_for_it_is_refused(
    client: httpx2.AsyncClient, user: UserCreated, services: Services
) -> None:
    error = assert_error(await embed(client, user, input="x", dimensions=128), 400, "invalid_request")
    assert error["param"] == "dimensions"
    assert await logs_of(services, user) == []


async def test_the_multilingual_model_serves_too(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await embed(client, user, model=E5, input=["Wo ist der Bahnhof?"], encoding_format="float")
    assert response.status_code == 200, response.text
    vector = np.array(response.json()["data"][0]["embedding"])
    assert vector.shape == (384,)
    assert np.isclose(np.linalg.norm(vector), 1.0, atol=1e-4)


@pytest.mark.parametrize(("model", "price"), [(MINILM, MINILM_PER_1M), (E5, E5_PER_1M)])
async def test_a_call_is_billed_exactly_per_input_token_with_one_usage_log(
    client: httpx2.AsyncClient, user: UserCreated, services: Services, model: str, price: Any
) -> None:
    before = await balance_units(services, user)
    inputs = TEXTS * 40  # 120 inputs, one engine call
    response = await embed(client, user, model=model, input=inputs)
    assert response.status_code == 200, response.text
    tokens = sum(await token_counts(services, model, inputs))
    assert response.json()["usage"]["prompt_tokens"] == tokens
    cost = cost_per_million(tokens, price)
    assert before - await balance_units(services, user) == cost
    [log] = await logs_of(services, user)
    assert (log.model, log.endpoint, log.status) == (model, "embeddings", "succeeded")
    assert (log.input_tokens, log.output_tokens, log.units, log.unit) == (tokens, 0, tokens, "tokens")
    assert log.cost_micro_cents == cost


async def test_a_call_carries_the_receipt_headers(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await embed(client, user, input="receipt")
    assert response.headers["x-request-id"].startswith("req_")
    assert response.headers["traceparent"].startswith("00-")
    assert response.headers["x-batchin-run-id"]
    assert response.headers["x-batchin-prompt-version"] == "default"


async def test_a_call_gets_a_served_receipt_and_a_trace(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    response = await embed(client, user, input=TEXTS, encoding_format="base64")
    rows = [base64.b64decode(d["embedding"]) for d in response.json()["data"]]
    payload = await assert_served_receipt(
        client, response, user.api_key, input_bytes=orjson.dumps(TEXTS), output_bytes=b"".join(rows)
    )
    assert (payload["model_id"], payload["unit"]) == (MINILM, "tokens")


@pytest.mark.parametrize(
    "body",
    [
        {"input": ""},
        {"input": []},
        {"input": ["fine", ""]},
        {"input": [101, 2023, 102]},
        {"input": [[101, 2023, 102]]},
        {"input": ["x"] * 2049},
        {"input": "word " * 300},  # 302 tokens > MiniLM's 256
        {},
        {"input": 42},
    ],
)
async def test_bad_input_is_refused_and_not_billed(
    client: httpx2.AsyncClient, user: UserCreated, services: Services, body: dict[str, Any]
) -> None:
    before = await balance_units(services, user)
    error = assert_error(await embed(client, user, **body), 400, "invalid_request")
    assert error["param"] == "input"
    assert await balance_units(services, user) == before
    assert await logs_of(services, user) == []


@pytest.mark.parametrize(
    ("body", "param"),
    [({"encoding_format": "int8"}, "encoding_format"), ({"dimensions": 0}, "dimensions")],
)
async def test_bad_parameters_name_themselves(
    client: httpx2.AsyncClient, user: UserCreated, body: dict[str, Any], param: str
) -> None:
    error = assert_error(await embed(client, user, input="x", **body), 400, "invalid_request")
    assert error["param"] == param


async def test_an_unknown_model_is_404(client: httpx2.AsyncClient, user: UserCreated) -> None:
    assert_error(await embed(client, user, model="no-such-model", input="x"), 404, "not_found")


async def test_a_model_of_another_kind_is_refused(client: httpx2.AsyncClient, user: UserCreated) -> None:
    error = assert_error(await embed(client, user, model=WHISPER_TINY_EN, input="x"), 400, "invalid_request")
    assert error["param"] == "model"


async def test_without_credit_it_is_402_and_nothing_is_logged(
    client: httpx2.AsyncClient, make_user: MakeUser, services: Services
) -> None:
    broke = await make_user(credit_cents=0)
    assert_error(await embed(client, broke, input="x"), 402, "payment_required")
    assert await logs_of(services, broke) == []


async def test_a_refusal_is_traced_but_gets_no_receipt(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    broke = await make_user(credit_cents=0)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = await client.post(
        "/v1/embeddings",
        json={"model": MINILM, "input": "x"},
        headers={**bearer(broke.api_key), "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
    )
    assert_error(response, 402, "payment_required")
    assert "X-VaaS-Record-Id" not in response.headers
    trace = (await client.get(f"/v1/traces/{trace_id}", headers=bearer(broke.api_key))).json()
    assert trace["record_id"] is None
    spans = {span["name"]: span for span in trace["spans"]}
    assert set(spans) == {"batchin.call", "batchin.admission"}
    assert spans["batchin.call"]["attributes"]["batchin.status"] == "refused"


async def test_without_a_key_it_is_401(client: httpx2.AsyncClient) -> None:
    response = await client.post("/v1/embeddings", json={"model": MINILM, "input": "x"})
    assert_error(response, 401, "unauthorized")
