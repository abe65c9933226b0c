"""/v1/vaas* over the real ASGI app: the seed's shapes, public reads, 404s, the log endpoints."""

from __future__ import annotations

import hashlib
import uuid

import httpx2
import pytest

from batchin.core.audit.verify import verify_evidence
from tests.conftest import MakeUser, assert_error, bearer

SEED_BODY = {
    "input_text": "What is a zero-knowledge proof?",
    "output_text": "A cryptographic method...",
    "model_id": "qwen3.5-27b",
    "gpu_id": "execution-a19c-42ef",
}
TRACEPARENT = "00-0123456789abcdef0123456789abcdef-b7ad6b7169203331-01"


@pytest.fixture
async def key(make_user: MakeUser) -> str:
    return (await make_user()).api_key


async def test_create_returns_the_seed_fields(client: httpx2.AsyncClient, key: str) -> None:
    response = await client.post("/v1/vaas", json=SEED_BODY, headers=bearer(key))
    assert response.status_code == 200, response.text
    body = response.json()
    uuid.UUID(body["audit_id"])
    assert body["input_hash"] == hashlib.sha256(SEED_BODY["input_text"].encode()).hexdigest()
    assert body["output_hash"] == hashlib.sha256(SEED_BODY["output_text"].encode()).hexdigest()
    # 31 + 25 bytes → 8 + 7 tokens at ~4 bytes/token on the generic GPU coefficient:
    # (8 x 0.083 + 7 x 0.83) / 1000 Wh = 0.006474 Wh; carbon at the assumed US average of 390 g/kWh.
    assert body["energy_wh"] == 0.006474
    assert body["carbon_grams_co2e"] == 0.002525
    assert body["carbon_offset_vs_us_cloud"] == 0.0
    assert body["energy_source"] == "Unspecified grid mix (US average assumed)"
    assert body["energy_method"] == "estimate:gpu-llm"
    assert len(body["signature"]) == 128
    fetched = await client.get(f"/v1/vaas/{body['audit_id']}")
    assert fetched.status_code == 200
    assert fetched.json() == body


async def test_create_needs_a_key_and_valid_fields(client: httpx2.AsyncClient, key: str) -> None:
    assert_error(await client.post("/v1/vaas", json=SEED_BODY), 401, "unauthorized")
    error = assert_error(
        await client.post("/v1/vaas", json={"input_text": "x", "output_text": "y"}, headers=bearer(key)),
        400,
        "invalid_request",
    )
    assert error["param"] == "model_id"


@pytest.mark.parametrize("suffix", ["", "/verify", "/evidence"])
@pytest.mark.parametrize("record_id", ["0b5d9f8e-6c1a-4f3e-9a7b-2d4c8e1f0a63", "not-a-uuid"])
async def test_unknown_record_is_404(client: httpx2.AsyncClient, suffix: str, record_id: str) -> None:
    assert_error(await client.get(f"/v1/vaas/{record_id}{suffix}"), 404, "not_found")


async def test_verify_and_evidence_are_public(client: httpx2.AsyncClient, key: str) -> None:
    headers = {**bearer(key), "traceparent": TRACEPARENT, "X-BatchIn-Prompt-Version": "support@v2"}
    created = (await client.post("/v1/vaas", json=SEED_BODY, headers=headers)).json()
    audit_id = created["audit_id"]
    verification = (await client.get(f"/v1/vaas/{audit_id}/verify")).json()
    assert {k: verification[k] for k in ("audit_id", "valid", "attestation")} == {
        "audit_id": audit_id,
        "valid": True,
        "attestation": "caller_asserted",
    }
    pack = (await client.get(f"/v1/vaas/{audit_id}/evidence")).json()
    assert pack["record_id"] == audit_id
    assert pack["trace_id"] == "0123456789abcdef0123456789abcdef"
    assert pack["run_id"].startswith("run_")
    assert pack["route_id"] == "default-route"
    assert pack["provider"] == "batchin-managed"
    assert pack["environment"] == "development"
    assert pack["prompt_version_id"] == "support@v2"
    assert pack["verification_method"] == "Ed25519Signature2020"
    current = (await client.get("/v1/vaas/pubkey/current")).json()
    assert pack["public_key"] == "ed25519:" + current["verify_key_hex"]
    assert pack["key_id"] == current["key_id"]
    assert pack["signature"] == "ed25519:" + created["signature"]
    assert pack["payload"]["gpu_id"] == "execution-a19c-42ef"
    assert verify_evidence(pack, trusted_keys=[current["verify_key_hex"]])["valid"] is True


async def test_checkpoint_and_consistency(client: httpx2.AsyncClient, key: str) -> None:
    await client.post("/v1/vaas", json=SEED_BODY, headers=bearer(key))
    first = (await client.get("/v1/vaas/log/checkpoint")).json()
    await client.post("/v1/vaas", json=SEED_BODY, headers=bearer(key))
    second = (await client.get("/v1/vaas/log/checkpoint")).json()
    m, n = first["payload"]["tree_size"], second["payload"]["tree_size"]
    assert n == m + 1
    proof = (await client.get(f"/v1/vaas/log/consistency?first={m}&second={n}")).json()
    assert proof["first_root_hash"] == first["payload"]["root_hash"]
    assert proof["second_root_hash"] == second["payload"]["root_hash"]
    error = assert_error(
        await client.get(f"/v1/vaas/log/consistency?first={n}&second={m}"), 400, "invalid_request"
    )
    assert error["param"] == "second"
    error = assert_error(
        await client.get("/v1/vaas/log/consistency?first=0&second=1"), 400, "invalid_request"
    )
    assert error["param"] == "first"


async def test_verify_page_and_assets_are_served_locally(client: httpx2.AsyncClient) -> None:
    page = await client.get(f"/verify/{uuid.uuid4()}")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from another origin
    for name in ("verify.js", "nacl-fast.min.js", "verify.css"):
        asset = await client.get(f"/verify/assets/{name}")
        assert asset.status_code == 200, name
    assert_error(await client.get("/verify/assets/..%2Fapp.py"), 404, "not_found")
    assert_error(await client.get("/verify/assets/missing.js"), 404, "not_found")
