"""/metrics exports what the write-behind buffers (traces, prompt runs) dropped, failed and hold."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from batchin.config import Settings
from batchin.services import Services
from tests.conftest import MakeUser, bearer
from tests.text_fixtures import asgi_client, scripted_services


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    # One call fits each buffer and the writer waits an hour: every further call drops the oldest.
    async with scripted_services(
        settings,
        trace_buffer_calls=1,
        trace_flush_seconds=3600,
        prompt_buffer_runs=1,
        prompt_flush_seconds=3600,
    ) as built:
        yield built


async def scrape(services: Services) -> dict[tuple[str, str], float]:
    async with asgi_client(services, host="127.0.0.1") as operator:
        response = await operator.get("/metrics")
    assert response.status_code == 200, response.text
    return {
        (sample.name, sample.labels["buffer"]): sample.value
        for family in text_string_to_metric_families(response.text)
        if family.name.startswith("batchin_write_behind_")
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


async def test_an_idle_server_reports_every_buffer_at_zero(services: Services) -> None:
    assert await scrape(services) == {
        (f"batchin_write_behind_{figure}", buffer): 0.0
        for figure in ("dropped_total", "failed_total", "pending")
        for buffer in ("prompt_runs", "traces")
    }


async def test_drops_from_a_full_buffer_are_counted(
    services: Services, make_user: MakeUser, caplog: pytest.LogCaptureFixture
) -> None:
    user = await make_user()
    body = {"model": "scripted-chat", "messages": [{"role": "user", "content": "hi"}]}
    async with asgi_client(services) as client:
        for _ in range(3):
            response = await client.post("/v1/chat/completions", json=body, headers=bearer(user.api_key))
            assert response.status_code == 200, response.text

    figures = await scrape(services)

    assert figures[("batchin_write_behind_dropped_total", "traces")] == 2.0
    assert figures[("batchin_write_behind_pending", "traces")] == 1.0
    assert figures[("batchin_write_behind_failed_total", "traces")] == 0.0
    assert "dropped traced calls (1 so far): the store is falling behind" in caplog.messages
