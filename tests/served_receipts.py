"""Checks that a served inference response is covered: its X-VaaS-* headers name a record that
verifies (signature, log inclusion, attestation `served`), whose hashes are those of the bytes the
caller sent and got, and the trace id in its `traceparent` answers with queue and engine spans."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx2

from tests.conftest import bearer


def sha256_ref(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def assert_served_receipt(
    client: httpx2.AsyncClient,
    response: httpx2.Response,
    api_key: str,
    *,
    input_bytes: bytes,
    output_bytes: bytes,
) -> dict[str, Any]:
    """The record's payload, once every check has passed."""
    assert response.status_code == 200, response.text
    record_id = response.headers["X-VaaS-Record-Id"]
    verified = (await client.get(f"/v1/vaas/{record_id}/verify")).json()
    assert verified["valid"] is True
    assert verified["attestation"] == "served"

    pack = (await client.get(f"/v1/vaas/{record_id}/evidence")).json()
    payload: dict[str, Any] = pack["payload"]
    trace_id = response.headers["traceparent"].split("-")[1]
    assert pack["signature"] == "ed25519:" + response.headers["X-VaaS-Signature"]
    assert pack["public_key"] == "ed25519:" + response.headers["X-VaaS-PublicKey"]
    assert (payload["run_id"], payload["trace_id"]) == (response.headers["X-BatchIn-Run-Id"], trace_id)
    assert payload["input_hash"] == sha256_ref(input_bytes)
    assert payload["output_hash"] == sha256_ref(output_bytes)

    trace = await client.get(f"/v1/traces/{trace_id}", headers=bearer(api_key))
    assert trace.status_code == 200, trace.text
    detail = trace.json()
    assert detail["record_id"] == record_id
    spans = {span["name"]: span for span in detail["spans"]}
    assert {"batchin.call", "batchin.admission", "batchin.engine"} <= spans.keys()
    assert spans["batchin.call"]["status"]["code"] == "ok"
    return payload
