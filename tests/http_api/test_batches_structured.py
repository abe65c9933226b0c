"""A batch whose tasks use response_format, n, logprobs and the penalties, on the embedded SmolLM2:
each task's result is the same object the synchronous call returns."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.batch_fixtures import wait_for
from tests.conftest import MakeUser, bearer

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
ANSWER: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
    "required": ["answer"],
    "additionalProperties": False,
}


@pytest.fixture
def backend() -> str:
    return "sqlite"


def task(custom_id: str, **body: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": "Is the sky blue?"}]
    return {"custom_id": custom_id, "model": MODEL, "request_body": {"messages": messages, **body}}


@pytest.mark.timeout(900)
async def test_batch_tasks_use_structured_outputs_logprobs_n_and_penalties(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user: UserCreated = await make_user(credit_cents=1_000)
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER, "strict": True}}
    tasks = [
        task("schema", response_format=fmt, max_tokens=20),
        task("choices", n=2, max_tokens=4, logprobs=True, top_logprobs=1, seed=1),
        task("penalised", max_tokens=4, presence_penalty=1.0, logit_bias={"28": -100}),
    ]
    await services.batches.start()
    try:
        created = await client.post("/v1/batches", json={"tasks": tasks}, headers=bearer(user.api_key))
        assert created.status_code == 200, created.text
        batch = await wait_for(services, user, created.json()["id"], timeout=600)
    finally:
        await services.batches.stop()
    assert batch.status == "completed", batch
    listed = await client.get(f"/v1/batches/{batch.id}/tasks", headers=bearer(user.api_key))
    results = {t["custom_id"]: t for t in listed.json()["data"]}
    assert {t["status"] for t in results.values()} == {"completed"}, results
    schema_answer = results["schema"]["result"]["choices"][0]["message"]["content"]
    assert json.loads(schema_answer)["answer"] in ("yes", "no")
    choices = results["choices"]["result"]["choices"]
    assert [c["index"] for c in choices] == [0, 1]
    for choice in choices:
        assert "".join(t["token"] for t in choice["logprobs"]["content"]) == choice["message"]["content"]
    assert results["choices"]["result"]["usage"]["completion_tokens"] >= 2
