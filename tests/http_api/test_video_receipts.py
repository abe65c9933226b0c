"""A video job's receipt and trace: once completed, the job and its MP4 carry the X-VaaS-* headers of
a `served` record over the prompt and the MP4, under the trace of the call that submitted it, whose
stored trace has queue, engine and encode spans; until then the job names no record."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest

from batchin.config import Settings
from batchin.models.registry import ModelRegistry
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser, bearer
from tests.media_fixtures import VIDEO_MODEL, media_registry, media_services, wait_for_status
from tests.served_receipts import assert_served_receipt

pytestmark = pytest.mark.slow

PROMPT = "a lighthouse at dusk"
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


@pytest.fixture(scope="session")
async def registry() -> ModelRegistry:
    return await media_registry()


@pytest.fixture
async def services(settings: Settings, registry: ModelRegistry) -> AsyncIterator[Services]:
    async with media_services(settings, registry) as built:
        yield built


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user(credit_cents=1_000)


async def submit(client: httpx2.AsyncClient, user: UserCreated) -> httpx2.Response:
    body = {"model": VIDEO_MODEL, "prompt": PROMPT, "seconds": "2", "size": "64x64"}
    headers = {**bearer(user.api_key), "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    response = await client.post("/v1/videos", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response


async def test_a_queued_job_names_no_record_yet(client: httpx2.AsyncClient, user: UserCreated) -> None:
    created = await submit(client, user)
    assert created.json()["record_id"] is None
    assert "X-VaaS-Record-Id" not in created.headers


async def test_a_completed_job_and_its_mp4_carry_a_served_receipt_and_a_trace(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    created = await submit(client, user)
    video_id = created.json()["id"]
    done = await wait_for_status(client, video_id, bearer(user.api_key), {"completed", "failed"})
    assert done["status"] == "completed", done

    job = await client.get(f"/v1/videos/{video_id}", headers=bearer(user.api_key))
    content = await client.get(f"/v1/videos/{video_id}/content", headers=bearer(user.api_key))
    payload = await assert_served_receipt(
        client, content, user.api_key, input_bytes=PROMPT.encode(), output_bytes=content.content
    )
    usage = (payload["model_id"], payload["unit"], payload["units_milli"])
    assert usage == (VIDEO_MODEL, "video_seconds", 2000)
    record_id = done["record_id"]
    assert record_id == payload["record_id"]
    # The job, its MP4 and the submitting call name the same record, run and trace.
    for response in (job, content):
        assert response.headers["X-VaaS-Record-Id"] == record_id
        assert response.headers["traceparent"] == created.headers["traceparent"]
        assert response.headers["X-BatchIn-Run-Id"] == created.headers["X-BatchIn-Run-Id"]
    assert job.headers["X-VaaS-Signature"] == content.headers["X-VaaS-Signature"]

    trace_id, span_id = created.headers["traceparent"].split("-")[1:3]
    assert trace_id == CALLER_TRACE
    trace = (await client.get(f"/v1/traces/{trace_id}", headers=bearer(user.api_key))).json()
    spans = {span["name"]: span for span in trace["spans"]}
    assert set(spans) == {"batchin.call", "batchin.admission", "batchin.engine", "batchin.encode"}
    root = spans["batchin.call"]
    assert (root["span_id"], root["parent_span_id"]) == (span_id, CALLER_SPAN)
    assert root["attributes"]["batchin.endpoint"] == "videos"
    assert root["attributes"]["batchin.status"] == "succeeded"
    assert root["attributes"]["batchin.cost_micro_cents"] == 2 * 100_000
    assert all(spans[name]["parent_span_id"] == span_id for name in spans if name != "batchin.call")
    engine_end = int(spans["batchin.engine"]["end_time_unix_nano"])
    assert engine_end <= int(spans["batchin.encode"]["start_time_unix_nano"])


async def test_the_evidence_pack_of_a_video_record_verifies_offline(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    from batchin.core.audit.verify import verify_evidence

    created = await submit(client, user)
    done = await wait_for_status(client, created.json()["id"], bearer(user.api_key), {"completed", "failed"})
    pack = (await client.get(f"/v1/vaas/{done['record_id']}/evidence")).json()
    assert verify_evidence(pack)["valid"] is True
