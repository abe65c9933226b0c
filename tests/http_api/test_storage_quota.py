"""The per-user storage quota over HTTP (SQLite and PostgreSQL): an upload that would pass it is
refused with 413 storage_quota_exceeded and leaves nothing behind; racing uploads never overshoot
it; DELETE /v1/files/{id} gives the room back; /v1/usage/summary shows the figures; batch result
files are counted but never refused; /metrics shows the store sizes the last purge measured."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from batchin.config import Settings
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from batchin.store.tables import files
from tests.conftest import MakeUser, assert_error, bearer
from tests.text_fixtures import asgi_client, scripted_services

QUOTA = 1000
UPLOADS = 64 * 1024  # the upload limit: well above the quota, so the quota is what refuses


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with scripted_services(settings, storage_quota_bytes=QUOTA, file_upload_max_bytes=UPLOADS) as built:
        yield built


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user()


async def upload(client: httpx2.AsyncClient, user: UserCreated, size: int) -> httpx2.Response:
    return await client.post(
        "/v1/files",
        files={"file": ("in.jsonl", b"x" * size, "application/jsonl")},
        data={"purpose": "batch"},
        headers=bearer(user.api_key),
    )


async def summary(client: httpx2.AsyncClient, user: UserCreated) -> dict[str, int | None]:
    response = await client.get("/v1/usage/summary", headers=bearer(user.api_key))
    assert response.status_code == 200, response.text
    body = response.json()
    return {"storage_bytes": body["storage_bytes"], "storage_quota_bytes": body["storage_quota_bytes"]}


def on_disk(services: Services) -> list[Path]:
    """Every stored or staged file under the data dir's files/."""
    root = services.settings.data_dir / "files"
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


async def file_rows(services: Services) -> int:
    async with services.database.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(files)) or 0)


async def test_an_upload_past_the_quota_is_refused_and_leaves_nothing(
    services: Services, client: httpx2.AsyncClient, user: UserCreated
) -> None:
    assert (await upload(client, user, 800)).status_code == 200
    kept = on_disk(services)

    error = assert_error(await upload(client, user, 300), 413, "storage_quota_exceeded")

    assert error["param"] == "file"
    assert error["type"] == "insufficient_quota"
    assert "200 bytes left in your storage quota of 1000 bytes" in error["message"]
    assert on_disk(services) == kept  # no partial file, nothing left in staging
    assert await file_rows(services) == 1
    assert await summary(client, user) == {"storage_bytes": 800, "storage_quota_bytes": QUOTA}


async def test_a_full_quota_refuses_even_one_byte_and_other_users_are_not_affected(
    client: httpx2.AsyncClient, user: UserCreated, make_user: MakeUser
) -> None:
    assert (await upload(client, user, QUOTA)).status_code == 200

    error = assert_error(await upload(client, user, 1), 413, "storage_quota_exceeded")

    assert "use 1000 bytes of your storage quota of 1000 bytes" in error["message"]
    assert (await upload(client, await make_user(), QUOTA)).status_code == 200


async def test_deleting_a_file_gives_its_room_back(
    services: Services, client: httpx2.AsyncClient, user: UserCreated, make_user: MakeUser
) -> None:
    first = (await upload(client, user, 900)).json()["id"]
    assert_error(await upload(client, user, 200), 413, "storage_quota_exceeded")
    stranger = bearer((await make_user()).api_key)
    assert_error(await client.delete(f"/v1/files/{first}", headers=stranger), 404, "not_found")

    deleted = await client.delete(f"/v1/files/{first}", headers=bearer(user.api_key))

    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"id": first, "object": "file", "deleted": True}
    assert await summary(client, user) == {"storage_bytes": 0, "storage_quota_bytes": QUOTA}
    assert on_disk(services) == []
    assert_error(await client.delete(f"/v1/files/{first}", headers=bearer(user.api_key)), 404, "not_found")
    assert (await upload(client, user, 200)).status_code == 200


async def test_racing_uploads_never_pass_the_quota(
    services: Services, client: httpx2.AsyncClient, user: UserCreated
) -> None:
    responses = await asyncio.gather(*(upload(client, user, 300) for _ in range(6)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 200, 413, 413, 413]
    for refused in (r for r in responses if r.status_code == 413):
        assert_error(refused, 413, "storage_quota_exceeded")
    assert await summary(client, user) == {"storage_bytes": 900, "storage_quota_bytes": QUOTA}
    assert len(on_disk(services)) == 3
    assert await file_rows(services) == 3


async def test_batch_results_are_counted_but_never_refused(
    services: Services, client: httpx2.AsyncClient, user: UserCreated, tmp_path: Path
) -> None:
    results = tmp_path / "output.jsonl"
    results.write_bytes(b"r" * (QUOTA + 500))

    stored = await services.files.store_path(
        user.id,
        results,
        filename="batch_output.jsonl",
        purpose="batch_output",
        content_type="application/jsonl",
        enforce_quota=False,
    )

    assert stored.bytes == QUOTA + 500
    assert await summary(client, user) == {"storage_bytes": QUOTA + 500, "storage_quota_bytes": QUOTA}
    assert_error(await upload(client, user, 1), 413, "storage_quota_exceeded")


async def test_no_quota_means_no_limit_and_the_summary_says_null(
    settings: Settings, make_user: MakeUser
) -> None:
    async with (
        scripted_services(settings, storage_quota_bytes=0, file_upload_max_bytes=UPLOADS) as services,
        asgi_client(services) as client,
    ):
        user = await make_user()
        assert (await upload(client, user, 5000)).status_code == 200
        assert await summary(client, user) == {"storage_bytes": 5000, "storage_quota_bytes": None}


async def test_the_openapi_document_names_the_quota_error_where_bytes_are_stored(
    client: httpx2.AsyncClient,
) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in ("/v1/files", "/v1/images", "/v1/videos"):
        assert "`storage_quota_exceeded`" in paths[path]["post"]["responses"]["413"]["description"], path
    assert "storage_quota_exceeded" not in paths["/v1/batches"]["post"]["responses"]["413"]["description"]


async def test_metrics_show_the_store_sizes_of_the_last_purge(
    services: Services, client: httpx2.AsyncClient, user: UserCreated
) -> None:
    await upload(client, user, 300)
    await upload(client, user, 200)
    chat = {"model": "scripted-chat", "messages": [{"role": "user", "content": "hi"}]}
    called = await client.post("/v1/chat/completions", json=chat, headers=bearer(user.api_key))
    assert called.status_code == 200, called.text
    await services.traces.flush()
    assert await services.retention.run_now() is not None

    async with asgi_client(services, host="127.0.0.1") as operator:
        response = await operator.get("/metrics")

    assert response.status_code == 200, response.text
    samples = {
        (sample.name, tuple(sorted(sample.labels.values()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    assert samples[("batchin_stored_file_bytes", ("batch",))] == 500
    assert samples[("batchin_stored_files", ("batch",))] == 2
    assert samples[("batchin_store_rows", ("files",))] == 2
    assert samples[("batchin_store_rows", ("trace_summaries",))] == 1
    assert samples[("batchin_store_rows", ("trace_spans",))] >= 2
    assert samples[("batchin_store_rows", ("vaas_records",))] == 1
    assert samples[("batchin_retention_purged_rows", ("files",))] == 0
    assert samples[("batchin_retention_last_run_timestamp_seconds", ())] > 0
