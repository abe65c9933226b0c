"""An engine worker that dies: through the real HTTP app and the real llama.cpp worker, a SIGSEGV
mid-stream fails only that stream (an error event, nothing billed) and the next call is served by a
restarted worker; an engine that crashes on every load is `unavailable` with a reason while the other
models serve, and recovers on its own once its loads succeed. /metrics counts each restart and shows
the new worker up with its resident memory."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from batchin.config import Settings
from batchin.models.hosted_text import HostedTextRunner
from batchin.models.registry import HOSTED
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser, assert_error, bearer
from tests.text_fixtures import (
    CATALOG,
    SCRIPTED_ENGINES,
    asgi_client,
    balance_units,
    eventually,
    logs_of,
    scripted_services,
    sse_json,
)

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
CRASHING_ENGINES = {**SCRIPTED_ENGINES, "crashing": "tests.fakes.crashing_runner:CrashingRunner"}
CRASHING_HOSTED = {"crashing": HOSTED["llama_cpp"]}
SUPERVISOR = "supervisor = { base_delay = 0.05, crash_loop_crashes = 2, crash_loop_delay = 0.2 }"


async def engine_metrics(services: Services, model: str) -> dict[str, float]:
    """The batchin_engine_* samples of `model` on /metrics, scraped from loopback."""
    async with asgi_client(services, host="127.0.0.1") as operator:
        response = await operator.get("/metrics")
    assert response.status_code == 200
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name.startswith("batchin_engine_")
        and not sample.name.endswith("_created")
        and sample.labels == {"model": model}
    }


def crashing_catalog(options: str) -> str:
    return (
        CATALOG
        + f"""
[models.crashy]
kind = ["chat"]
engine = "crashing"
licence = "MIT"
context_length = 64
status = "always_on"
engine_options = {{ {options}, {SUPERVISOR} }}
pricing = {{ input_per_1m = 1.5, output_per_1m = 3 }}
"""
    )


async def test_a_worker_killed_mid_stream_ends_the_stream_with_a_503_event_and_bills_nothing(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    runner = await services.registry.runner(MODEL)
    assert isinstance(runner, HostedTextRunner)
    worker = runner.worker
    assert worker is not None
    server_pid, received = os.getpid(), worker.items_received
    before = await balance_units(services, user)
    scraped = await engine_metrics(services, MODEL)  # the session's registry may have restarted before
    assert scraped["batchin_engine_worker_up"] == 1
    restarts = scraped["batchin_engine_restarts_total"]
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count from 1 to 500, separated by commas."}],
        "stream": True,
        "max_tokens": 1500,
        "temperature": 0,
    }
    call = asyncio.create_task(client.post("/v1/chat/completions", json=body, headers=bearer(user.api_key)))
    await eventually(lambda: worker.items_received >= received + 3, timeout=30)
    os.kill(worker.pid, signal.SIGSEGV)
    response = await call

    assert response.status_code == 200
    events = sse_json(response.text)
    assert events[1]["choices"][0]["delta"]["content"]
    assert set(events[-1]) == {"error"}
    assert events[-1]["error"]["code"] == "service_unavailable"
    assert "SIGSEGV" in events[-1]["error"]["message"]
    assert await balance_units(services, user) == before
    assert await logs_of(services, user) == []  # the lost work is neither billed nor logged
    assert os.getpid() == server_pid

    again = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    response = await client.post("/v1/chat/completions", json=again, headers=bearer(user.api_key))
    assert response.status_code == 200, response.text
    restarted = runner.worker
    assert restarted is not None
    assert restarted.pid != worker.pid
    assert services.registry.status(MODEL).status == "always_on"
    scraped = await engine_metrics(services, MODEL)
    assert scraped["batchin_engine_restarts_total"] == restarts + 1
    assert scraped["batchin_engine_worker_up"] == 1
    assert scraped["batchin_engine_worker_rss_bytes"] > 10 * 1024 * 1024  # the new worker holds the model


@pytest.fixture
async def crashing(settings: Settings) -> AsyncIterator[Services]:
    catalog = crashing_catalog("crashes = -1")
    async with scripted_services(
        settings, catalog=catalog, engines=CRASHING_ENGINES, hosted=CRASHING_HOSTED
    ) as built:
        yield built


async def test_an_engine_crashing_on_every_load_is_unavailable_while_others_serve(
    crashing: Services, make_user: MakeUser
) -> None:
    health = crashing.registry.status("crashy")
    assert health.status == "unavailable"
    assert health.reason is not None
    assert "crash loop" in health.reason
    assert "SIGSEGV" in health.reason
    user: UserCreated = await make_user()
    async with asgi_client(crashing) as client:
        messages = [{"role": "user", "content": "Say hello"}]
        ok = await client.post(
            "/v1/chat/completions",
            json={"model": "scripted-chat", "messages": messages},
            headers=bearer(user.api_key),
        )
        refused = await client.post(
            "/v1/chat/completions",
            json={"model": "crashy", "messages": messages},
            headers=bearer(user.api_key),
        )
    assert ok.status_code == 200
    assert_error(refused, 503, "service_unavailable")
    scraped = await engine_metrics(crashing, "crashy")
    assert scraped["batchin_engine_worker_up"] == 0
    assert scraped["batchin_engine_restarts_total"] >= 1
    assert "batchin_engine_worker_rss_bytes" not in scraped


async def test_a_crash_looping_engine_recovers_on_its_own(settings: Settings, tmp_path: Path) -> None:
    catalog = crashing_catalog(f'crashes = 3, count_file = "{tmp_path / "loads"}"')
    async with scripted_services(
        settings, catalog=catalog, engines=CRASHING_ENGINES, hosted=CRASHING_HOSTED
    ) as built:
        assert built.registry.status("crashy").status == "unavailable"
        await eventually(lambda: built.registry.status("crashy").status == "always_on", timeout=60)
        runner = await built.registry.text_runner("crashy")
        assert isinstance(runner, HostedTextRunner)
        assert runner.health().extra["restarts"] == 3
