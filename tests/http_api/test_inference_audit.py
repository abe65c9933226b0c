"""Every inference call gets a signed audit record: the X-VaaS-* headers name it, its evidence pack
names the same run and trace as the response, and a third party verifies it with PyNaCl and a JCS
library alone (no BatchIn code)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import nacl.signing
import pytest
import rfc8785

from batchin.config import Settings
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser, bearer
from tests.text_fixtures import scripted_services, sse_json

MODEL = "scripted-chat"
MESSAGES = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with scripted_services(settings) as built:
        yield built


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user()


def third_party_verify(pack: dict[str, Any]) -> bool:
    key = bytes.fromhex(pack["public_key"].removeprefix("ed25519:"))
    signature = bytes.fromhex(pack["signature"].removeprefix("ed25519:"))
    try:
        nacl.signing.VerifyKey(key).verify(rfc8785.dumps(pack["payload"]), signature)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


async def evidence(client: httpx2.AsyncClient, record_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/vaas/{record_id}/evidence")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_whole_answer_carries_the_final_records_signature(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    response = await client.post(
        "/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES}, headers=bearer(user.api_key)
    )
    assert response.status_code == 200, response.text
    pack = await evidence(client, response.headers["X-VaaS-Record-Id"])

    assert pack["record_id"] == response.headers["X-VaaS-Record-Id"]
    assert pack["run_id"] == response.headers["X-BatchIn-Run-Id"]
    assert pack["trace_id"] == response.headers["traceparent"].split("-")[1]
    assert pack["signature"].removeprefix("ed25519:") == response.headers["X-VaaS-Signature"]
    assert pack["public_key"].removeprefix("ed25519:") == response.headers["X-VaaS-PublicKey"]
    text = response.json()["choices"][0]["message"]["content"]
    assert pack["payload"]["output_hash"] == "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    assert third_party_verify(pack)


async def test_stream_record_covers_the_full_output(client: httpx2.AsyncClient, user: UserCreated) -> None:
    body = {"model": MODEL, "messages": MESSAGES, "stream": True}
    async with client.stream(
        "POST", "/v1/chat/completions", json=body, headers=bearer(user.api_key)
    ) as response:
        assert response.status_code == 200
        record_id = response.headers["X-VaaS-Record-Id"]
        assert response.headers["X-VaaS-Signature"]
        raw = (await response.aread()).decode()
    text = "".join(
        chunk["choices"][0]["delta"].get("content") or "" for chunk in sse_json(raw) if chunk.get("choices")
    )
    pack = await evidence(client, record_id)
    assert pack["payload"]["output_hash"] == "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    assert pack["run_id"] == response.headers["X-BatchIn-Run-Id"]
    assert third_party_verify(pack)
    verdict = await client.get(f"/v1/vaas/{record_id}/verify")
    assert (verdict.json()["audit_id"], verdict.json()["valid"]) == (record_id, True)


async def test_refused_call_gets_no_record(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    broke = await make_user(credit_cents=0)
    response = await client.post(
        "/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES}, headers=bearer(broke.api_key)
    )
    assert response.status_code == 402
    assert "X-VaaS-Record-Id" not in response.headers
