"""The closed loop on the embedded SmolLM2 model, through the HTTP API: real traffic with two prompt
versions backfills the registry, an experiment replays a sample, a regression is reported and the
candidate is promoted (an equivalent prompt) or kept a candidate (a prompt that changes the answers).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from batchin.app import build_services
from batchin.config import Settings
from batchin.models.registry import ModelRegistry
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser, bearer
from tests.db_reset import empty_tables
from tests.prompt_fixtures import GENEROUS_BOUNDS

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
QUESTIONS = ("Describe the sea.", "Tell me about trees.", "What do cats like?")
HELPFUL = "You are a helpful assistant.\nAnswer in plain English."
PIRATE = "You are a helpful assistant.\nYou are a pirate: start every answer with 'Arr, matey!'."


@pytest.fixture
async def services(settings: Settings, model_registry: ModelRegistry) -> AsyncIterator[Services]:
    built = await build_services(settings.model_copy(update=GENEROUS_BOUNDS), registry=model_registry)
    try:
        yield built
    finally:
        await empty_tables(built)
        await built.close()


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user()


async def ask(
    client: httpx2.AsyncClient, user: UserCreated, system: str, question: str, header: str | None = None
) -> httpx2.Response:
    headers = {**bearer(user.api_key), **({"X-BatchIn-Prompt-Version": header} if header else {})}
    body = {
        "model": MODEL,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
        "max_tokens": 8,
        "temperature": 0,
    }
    response = await client.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response


async def opt_in(client: httpx2.AsyncClient, user: UserCreated, registry_id: str) -> None:
    """Experiments are opt-in per registry: turned on before the traffic, so its runs are sampled."""
    body = {"experiments_enabled": True}
    response = await client.patch(f"/v1/prompts/{registry_id}", json=body, headers=bearer(user.api_key))
    assert response.status_code == 200, response.text


async def get(client: httpx2.AsyncClient, user: UserCreated, path: str) -> Any:
    response = await client.get(path, headers=bearer(user.api_key))
    assert response.status_code == 200, response.text
    return response.json()


async def test_an_equivalent_prompt_version_is_replayed_and_promoted(
    client: httpx2.AsyncClient, user: UserCreated, services: Services
) -> None:
    await opt_in(client, user, "support")
    answers = [(await ask(client, user, HELPFUL, q, "support@v1")).json() for q in QUESTIONS]
    await ask(client, user, HELPFUL, QUESTIONS[0], "support@v2")  # same prompt, new version name

    [registry] = (await get(client, user, "/v1/prompts"))["items"]
    assert (registry["registry_id"], registry["source"], registry["total_runs"]) == (
        "support",
        "registered",  # created by the opt-in
        4,
    )
    assert [(v["version_id"], v["status"]) for v in registry["versions"]] == [
        ("support@v1", "promoted"),
        ("support@v2", "candidate"),
    ]

    assert await services.experiments.run_pending() == 1
    [experiment] = (await get(client, user, "/v1/experiments"))["items"]
    assert (experiment["status"], experiment["promotion_status"], experiment["pass_rate"]) == (
        "passed",
        "promoted",
        1,
    )
    detail = await get(client, user, f"/v1/experiments/{experiment['experiment_id']}")
    assert [s["candidate_output"] for s in detail["samples"]] == [
        a["choices"][0]["message"]["content"] for a in answers
    ]
    [regression] = (await get(client, user, "/v1/prompt-regressions"))["items"]
    assert (regression["status"], regression["pass_count"], regression["avg_similarity"]) == ("passed", 3, 1)

    [registry] = (await get(client, user, "/v1/prompts"))["items"]
    assert registry["promoted_version_id"] == "support@v2"
    replays = [log for log in await get(client, user, "/v1/usage/logs") if log["endpoint"] == "prompt_replay"]
    assert len(replays) == 3  # the greedy baseline runs are reused; the candidate is replayed
    assert all(log["cost_micro_cents"] > 0 for log in replays)


async def test_a_prompt_that_changes_the_answers_stays_a_candidate(
    client: httpx2.AsyncClient, user: UserCreated, services: Services
) -> None:
    await opt_in(client, user, "sys-" + hashlib.sha256(HELPFUL.splitlines()[0].encode()).hexdigest()[:10])
    for question in QUESTIONS:
        baseline = (await ask(client, user, HELPFUL, question)).headers["X-BatchIn-Prompt-Version"]
    candidate = (await ask(client, user, PIRATE, QUESTIONS[0])).headers["X-BatchIn-Prompt-Version"]
    assert baseline.split("@")[0] == candidate.split("@")[0]  # same first line: one registry

    await services.experiments.run_pending()
    [experiment] = (await get(client, user, "/v1/experiments"))["items"]
    assert (experiment["status"], experiment["promotion_status"]) == ("failed", "rejected")
    assert experiment["reason"].startswith("pass rate ")
    [regression] = (await get(client, user, "/v1/prompt-regressions"))["items"]
    assert regression["fail_count"] >= 1
    assert regression["sample_count"] == 3
    [registry] = (await get(client, user, "/v1/prompts"))["items"]
    assert registry["promoted_version_id"] == baseline
    assert {v["version_id"]: v["status"] for v in registry["versions"]} == {
        baseline: "promoted",
        candidate: "candidate",
    }

    # The same pair judged by meaning: an embeddings call per differing sample, a cosine similarity.
    body = {
        "registry_id": baseline.split("@")[0],
        "candidate_version_id": candidate,
        "judge": "embedding_similarity",
        "sample_size": 1,
    }
    started = await client.post("/v1/experiments", json=body, headers=bearer(user.api_key))
    assert started.status_code == 200, started.text
    await services.experiments.run_pending()
    detail = await get(client, user, f"/v1/experiments/{started.json()['experiment_id']}")
    [sample] = detail["samples"]
    assert sample["status"] == "done"
    assert -1 <= sample["similarity"] < 1
    assert detail["regression"]["judge"] == "embedding_similarity"
    embeddings = [log for log in await get(client, user, "/v1/usage/logs") if log["endpoint"] == "embeddings"]
    assert len(embeddings) == 1
