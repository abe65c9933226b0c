"""Receipts say who asserted them: POST /v1/vaas signs texts the caller supplies as
`caller_asserted` (with the user), receipts of calls we ran say `served`, records older than the
field still verify; an asserted record is billed per record and counted against the key's RPM."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx2
import pytest

from batchin.config import Settings
from batchin.core.audit.records import PendingRecord
from batchin.core.audit.verify import verify_evidence
from batchin.core.context import CallContext, Principal
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser, assert_error, bearer
from tests.text_fixtures import balance_units, logs_of, scripted_services

PRICE_USD = Decimal("0.002")
PRICE_UNITS = 200_000  # $0.002 = 0.2 cents, at 1,000,000 units per cent
BODY = {"input_text": "What is 2 + 2?", "output_text": "5", "model_id": "scripted-chat"}


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with scripted_services(settings, vaas_record_price_usd=PRICE_USD) as built:
        yield built


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user()


async def evidence(client: httpx2.AsyncClient, record_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/vaas/{record_id}/evidence")
    assert response.status_code == 200, response.text
    pack: dict[str, Any] = response.json()
    return pack


async def test_a_caller_asserted_receipt_verifies_and_says_so(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    created = await client.post("/v1/vaas", json=BODY, headers=bearer(user.api_key))
    assert created.status_code == 200, created.text
    record = created.json()
    pack = await evidence(client, record["audit_id"])
    verified = (await client.get(f"/v1/vaas/{record['audit_id']}/verify")).json()
    offline = verify_evidence(pack, input_text=BODY["input_text"], output_text=BODY["output_text"])

    assert (record["attestation"], record["asserted_by"]) == ("caller_asserted", user.id)
    assert (pack["payload"]["attestation"], pack["payload"]["asserted_by"]) == ("caller_asserted", user.id)
    assert verified == {
        "audit_id": record["audit_id"],
        "valid": True,
        "attestation": "caller_asserted",
        "asserted_by": user.id,
    }
    assert (offline["valid"], offline["attestation"], offline["asserted_by"]) == (
        True,
        "caller_asserted",
        user.id,
    )
    assert offline["checks"]["attestation"] is True


async def test_a_served_receipt_says_served(client: httpx2.AsyncClient, user: UserCreated) -> None:
    body = {"model": "scripted-chat", "messages": [{"role": "user", "content": "hi"}]}
    served = await client.post("/v1/chat/completions", json=body, headers=bearer(user.api_key))
    assert served.status_code == 200, served.text
    record_id = served.headers["x-vaas-record-id"]

    pack = await evidence(client, record_id)
    verified = (await client.get(f"/v1/vaas/{record_id}/verify")).json()

    assert pack["payload"]["attestation"] == "served"
    assert "asserted_by" not in pack["payload"]
    assert verified == {"audit_id": record_id, "valid": True, "attestation": "served", "asserted_by": None}
    assert verify_evidence(pack)["attestation"] == "served"


async def test_an_asserted_receipt_cannot_be_passed_off_as_served(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    record = (await client.post("/v1/vaas", json=BODY, headers=bearer(user.api_key))).json()
    pack = await evidence(client, record["audit_id"])
    pack["payload"]["attestation"] = "served"
    del pack["payload"]["asserted_by"]

    verdict = verify_evidence(pack)

    assert verdict["valid"] is False
    assert verdict["checks"]["signature"] is False


async def test_a_record_made_before_the_field_still_verifies(
    services: Services, client: httpx2.AsyncClient, user: UserCreated, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = PendingRecord.payload

    def as_before(self: PendingRecord, **fields: Any) -> dict[str, Any]:
        payload = made(self, **fields)
        del payload["attestation"]
        return payload

    monkeypatch.setattr(PendingRecord, "payload", as_before)
    ctx = CallContext(principal=Principal(user.id, "k", "p", 60, None), request_id="r")
    receipt = await services.audit.record_call(ctx, model_id="m", input_text="q", output_text="a")
    monkeypatch.undo()

    pack = await evidence(client, receipt.record_id)
    verified = (await client.get(f"/v1/vaas/{receipt.record_id}/verify")).json()
    offline = verify_evidence(pack)

    assert "attestation" not in pack["payload"]
    assert verified == {
        "audit_id": receipt.record_id,
        "valid": True,
        "attestation": None,
        "asserted_by": None,
    }
    assert (offline["valid"], offline["attestation"]) == (True, None)
    assert "attestation" not in offline["checks"]


async def test_each_asserted_record_is_billed_once(
    services: Services, client: httpx2.AsyncClient, user: UserCreated
) -> None:
    before = await balance_units(services, user)

    for _ in range(2):
        response = await client.post("/v1/vaas", json=BODY, headers=bearer(user.api_key))
        assert response.status_code == 200, response.text

    logs = await logs_of(services, user)
    assert [(log.model, log.endpoint, log.units, log.unit, log.status) for log in logs] == [
        ("vaas", "vaas.records", 1.0, "records", "succeeded")
    ] * 2
    assert [log.cost_micro_cents for log in logs] == [PRICE_UNITS] * 2
    assert await balance_units(services, user) == before - 2 * PRICE_UNITS
    listed = (await client.get("/v1/usage/logs", headers=bearer(user.api_key))).json()
    assert [row["cost_cents"] for row in listed] == [0.2, 0.2]


async def test_without_credit_nothing_is_signed_or_billed(
    services: Services, client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    broke = await make_user(credit_cents=0)

    response = await client.post("/v1/vaas", json=BODY, headers=bearer(broke.api_key))

    assert_error(response, 402, "payment_required")
    assert await logs_of(services, broke) == []
    assert await services.audit.log.size() == 0


async def test_asserted_records_count_against_the_keys_rpm(
    services: Services, client: httpx2.AsyncClient, user: UserCreated
) -> None:
    made = await client.post(
        "/v1/keys", json={"name": "two a minute", "rate_limit_rpm": 2}, headers=bearer(user.api_key)
    )
    assert made.status_code in (200, 201), made.text
    limited = bearer(made.json()["key"])

    statuses = [(await client.post("/v1/vaas", json=BODY, headers=limited)).status_code for _ in range(2)]
    refused = await client.post("/v1/vaas", json=BODY, headers=limited)

    assert statuses == [200, 200]
    assert_error(refused, 429, "rate_limited")
    assert "retry-after" in refused.headers
    assert len(await logs_of(services, user)) == 2
