"""POST /v1/files: OpenAI's multipart upload (purpose batch), streamed to disk, refused past the
configured size whether or not the client declares it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest

from batchin.config import Settings
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser, assert_error, bearer
from tests.text_fixtures import scripted_services

LIMIT = 4096
JSONL = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with scripted_services(settings, file_upload_max_bytes=LIMIT) as built:
        yield built


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user()


async def test_an_upload_is_stored_for_its_owner(
    client: httpx2.AsyncClient, user: UserCreated, make_user: MakeUser
) -> None:
    response = await client.post(
        "/v1/files",
        files={"file": ("requests.jsonl", JSONL, "application/jsonl")},
        data={"purpose": "batch"},
        headers=bearer(user.api_key),
    )

    assert response.status_code == 200, response.text
    stored = response.json()
    assert {k: stored[k] for k in ("object", "bytes", "filename", "purpose", "status")} == {
        "object": "file",
        "bytes": len(JSONL),
        "filename": "requests.jsonl",
        "purpose": "batch",
        "status": "processed",
    }
    content = await client.get(f"/v1/files/{stored['id']}/content", headers=bearer(user.api_key))
    assert content.content == JSONL
    stranger = bearer((await make_user()).api_key)
    assert_error(await client.get(f"/v1/files/{stored['id']}", headers=stranger), 404, "not_found")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"file": ("a.jsonl", JSONL), "purpose": (None, b"fine-tune")}, "purpose"),
        ({"file": ("a.jsonl", JSONL)}, "purpose"),
        ({"file": (None, b"not a file"), "purpose": (None, b"batch")}, "file"),
    ],
    ids=["unknown-purpose", "no-purpose", "no-file"],
)
async def test_an_invalid_upload_is_refused(
    client: httpx2.AsyncClient, user: UserCreated, fields: dict[str, tuple[str | None, bytes]], param: str
) -> None:
    response = await client.post("/v1/files", files=fields, headers=bearer(user.api_key))
    assert assert_error(response, 400, "invalid_request")["param"] == param


async def test_an_upload_must_be_multipart(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await client.post("/v1/files", json={"purpose": "batch"}, headers=bearer(user.api_key))
    assert_error(response, 400, "invalid_request")


async def test_an_upload_past_the_limit_is_refused_even_undeclared(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    big = JSONL * (LIMIT // len(JSONL) + 2)
    declared = await client.post(
        "/v1/files",
        files={"file": ("big.jsonl", big)},
        data={"purpose": "batch"},
        headers=bearer(user.api_key),
    )
    request = client.build_request(
        "POST",
        "/v1/files",
        files={"file": ("big.jsonl", big)},
        data={"purpose": "batch"},
        headers=bearer(user.api_key),
    )
    body = request.read()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1024):
            yield body[start : start + 1024]

    headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
    streamed = await client.post("/v1/files", content=chunks(), headers=headers)

    assert_error(declared, 413, "payload_too_large")
    assert_error(streamed, 413, "payload_too_large")
