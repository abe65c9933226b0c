"""Sixteen streams across two models, each model's engine in its own worker process: killing one
worker fails only that model's streams in flight (each ends with a 503 error event, nothing billed
or logged); the other model's streams all complete and are billed exactly once each."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import httpx2
import pytest

from batchin.config import Settings
from batchin.models.hosted import HostedRunner
from batchin.models.registry import HOSTED
from batchin.services import Services
from tests.conftest import MakeUser, bearer
from tests.text_fixtures import (
    SCRIPTED_ENGINES,
    asgi_client,
    eventually,
    logs_of,
    scripted_services,
    sse_json,
)

pytestmark = pytest.mark.slow

STREAMS_PER_MODEL = 8
TOKENS = 40
SUPERVISOR = "supervisor = { base_delay = 0.05 }"


def model(name: str) -> str:
    tokens = ", ".join(['" t"'] * TOKENS)
    return f"""
[models.{name}]
kind = ["chat"]
engine = "scripted"
licence = "MIT"
context_length = 4096
status = "always_on"
max_concurrency = {STREAMS_PER_MODEL}
queue_size = {STREAMS_PER_MODEL}
engine_options = {{ tokens = [{tokens}], delay = 0.05, {SUPERVISOR} }}
pricing = {{ input_per_1m = 1.5, output_per_1m = 3 }}
"""


@pytest.fixture
async def two_models(settings: Settings) -> AsyncIterator[Services]:
    # The scripted engine hosted like llama.cpp: each model's runner lives in a worker process.
    hosted = {"scripted": HOSTED["llama_cpp"]}
    catalog = model("doomed") + model("steady")
    async with scripted_services(settings, catalog=catalog, engines=SCRIPTED_ENGINES, hosted=hosted) as built:
        yield built


async def worker_of(services: Services, name: str) -> HostedRunner:
    runner = await services.registry.runner(name)
    assert isinstance(runner, HostedRunner)
    assert runner.worker is not None
    return runner


async def test_killing_one_models_worker_fails_only_its_streams(
    two_models: Services, make_user: MakeUser
) -> None:
    doomed_user, steady_user = await make_user(), await make_user()
    doomed, steady = await worker_of(two_models, "doomed"), await worker_of(two_models, "steady")
    doomed_worker, steady_worker = doomed.worker, steady.worker
    assert doomed_worker is not None
    assert steady_worker is not None
    assert doomed_worker.pid != steady_worker.pid

    async def stream(client: httpx2.AsyncClient, name: str, key: str) -> list[dict[str, object]]:
        body = {"model": name, "messages": [{"role": "user", "content": "go"}], "stream": True}
        response = await client.post("/v1/chat/completions", json=body, headers=bearer(key))
        assert response.status_code == 200
        return sse_json(response.text)

    async with asgi_client(two_models) as client:
        calls = [
            asyncio.create_task(stream(client, name, user.api_key))
            for name, user in (("doomed", doomed_user), ("steady", steady_user))
            for _ in range(STREAMS_PER_MODEL)
        ]
        # Every stream of both models is decoding in its worker before the kill.
        await eventually(
            lambda: (
                doomed_worker.in_flight == STREAMS_PER_MODEL and steady_worker.in_flight == STREAMS_PER_MODEL
            ),
            timeout=30,
        )
        os.kill(doomed_worker.pid, signal.SIGKILL)
        results = await asyncio.gather(*calls)

    lost, served = results[:STREAMS_PER_MODEL], results[STREAMS_PER_MODEL:]
    for events in lost:
        assert set(events[-1]) == {"error"}
        assert events[-1]["error"]["code"] == "service_unavailable"  # type: ignore[index]
    for events in served:
        text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])  # type: ignore[index]
        assert text == " t" * TOKENS
    assert await logs_of(two_models, doomed_user) == []
    logs = await logs_of(two_models, steady_user)
    assert [log.status for log in logs] == ["succeeded"] * STREAMS_PER_MODEL
    assert all(log.output_tokens == TOKENS for log in logs)
    assert steady.worker is steady_worker  # the other model's worker never noticed
    await eventually(lambda: doomed.worker is not None and doomed.worker.pid != doomed_worker.pid, timeout=30)
