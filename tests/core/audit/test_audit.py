"""AuditService: records signed over RFC 8785, logged, verifiable by a third party; tampering shows."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import VerifyKey
from sqlalchemy import delete, update

from batchin.app import build_services
from batchin.config import Settings
from batchin.core.audit.canonical import canonical
from batchin.core.audit.key_registry import key_path, rotate_key
from batchin.core.audit.service import AuditService, AuditUsage
from batchin.core.audit.verify import verify_evidence
from batchin.core.context import CallContext, Principal
from batchin.core.trace_context import continue_trace
from batchin.errors import NotFound
from batchin.models.registry import ModelRegistry
from batchin.services import Services
from batchin.store.tables import vaas_log_nodes, vaas_records
from tests.conftest import MakeUser

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
async def ctx(make_user: MakeUser) -> CallContext:
    user = await make_user()
    principal = Principal(user.id, "key-1", "bk_test", 600, None)
    return CallContext(principal=principal, request_id="req-1", trace=continue_trace(TRACEPARENT))


def third_party_verify(pack: dict[str, Any]) -> bool:
    """Only PyNaCl, the rfc8785 package and hashlib: none of our code."""
    message = rfc8785.dumps(pack["payload"])
    public = bytes.fromhex(pack["public_key"].removeprefix("ed25519:"))
    VerifyKey(public).verify(message, bytes.fromhex(pack["signature"].removeprefix("ed25519:")))
    proof, checkpoint = pack["inclusion_proof"], pack["checkpoint"]
    node = hashlib.sha256(b"\x00" + message).digest()
    index, last = proof["leaf_index"], proof["tree_size"] - 1
    for sibling in map(bytes.fromhex, proof["audit_path"]):  # RFC 9162 §2.1.3.2
        if index % 2 or index == last:
            node = hashlib.sha256(b"\x01" + sibling + node).digest()
            while index % 2 == 0 and index:
                index, last = index // 2, last // 2
        else:
            node = hashlib.sha256(b"\x01" + node + sibling).digest()
        index, last = index // 2, last // 2
    cp_key = bytes.fromhex(checkpoint["public_key"].removeprefix("ed25519:"))
    VerifyKey(cp_key).verify(
        rfc8785.dumps(checkpoint["payload"]), bytes.fromhex(checkpoint["signature"].removeprefix("ed25519:"))
    )
    return last == 0 and node.hex() == checkpoint["payload"]["root_hash"]


async def test_record_call_signs_what_the_call_did(services: Services, ctx: CallContext) -> None:
    receipt = await services.audit.record_call(
        ctx,
        model_id="smollm2-135m-instruct",
        input_text="What is a zero-knowledge proof?",
        output_text="A cryptographic method...",
        usage=AuditUsage(input_tokens=12, output_tokens=40),
    )
    payload = receipt.payload
    assert payload["run_id"] == ctx.run_id
    assert payload["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert payload["input_hash"] == "sha256:" + hashlib.sha256(b"What is a zero-knowledge proof?").hexdigest()
    assert payload["output_hash"] == "sha256:" + hashlib.sha256(b"A cryptographic method...").hexdigest()
    assert payload["prompt_version_id"] == "default"
    assert payload["provider"] == "batchin-managed"
    assert payload["energy_method"] == "estimate:cpu-llm-small"
    # (12 input x 0.0097 + 40 output x 0.097) Wh per 1k tokens = 0.0039964 Wh
    assert payload["energy_uwh"] == 3996
    VerifyKey(bytes.fromhex(receipt.public_key_hex)).verify(
        rfc8785.dumps(payload), bytes.fromhex(receipt.signature_hex)
    )
    assert receipt.response_headers() == {
        "X-VaaS-Record-Id": receipt.record_id,
        "X-VaaS-Signature": receipt.signature_hex,
        "X-VaaS-PublicKey": services.audit.current_key().verify_key_hex,
    }


async def test_evidence_pack_verifies_with_third_party_code_only(
    services: Services, ctx: CallContext
) -> None:
    receipts = [
        await services.audit.record_call(ctx, model_id="m", input_text=f"in {i}", output_text="out")
        for i in range(5)
    ]
    for receipt in receipts:
        pack = (await services.audit.evidence(receipt.record_id)).model_dump(mode="json")
        pack = json.loads(json.dumps(pack))  # as a third party receives it
        assert pack["run_id"] == ctx.run_id
        assert pack["trace_id"] == ctx.trace.trace_id
        assert pack["verification_method"] == "Ed25519Signature2020"
        assert third_party_verify(pack)
        assert verify_evidence(pack)["valid"] is True


async def test_stream_record_id_and_headers_come_before_the_output(
    services: Services, ctx: CallContext
) -> None:
    pending = services.audit.begin_call(ctx, model_id="m", input_text="prompt")
    headers = pending.response_headers()
    assert headers["X-VaaS-Record-Id"] == pending.record_id
    receipt = await services.audit.finish(pending, output_text="chunk one chunk two")
    assert receipt.record_id == pending.record_id
    # The early signature covers the opening statement, rebuilt from the final payload.
    opening = services.audit.opening_statement(receipt.payload)
    VerifyKey(bytes.fromhex(headers["X-VaaS-PublicKey"])).verify(
        opening, bytes.fromhex(headers["X-VaaS-Signature"])
    )
    assert (await services.audit.verify(pending.record_id)).valid is True
    with pytest.raises(RuntimeError):
        await services.audit.finish(pending, output_text="again")


async def test_a_sealed_record_is_logged_though_its_waiter_is_cancelled(
    services: Services, ctx: CallContext
) -> None:
    """`seal` signs and queues at once (the inference path's way): cancelling the wait for the
    receipt drops only the wait; the record is committed, verifiable, and sealed once."""
    pending = services.audit.begin_call(ctx, model_id="m", input_text="prompt")
    sealed = services.audit.seal(pending, output_text="the answer")
    assert pending.finished
    waiter = asyncio.ensure_future(sealed.receipt())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    receipt = await sealed.receipt()
    assert receipt.record_id == pending.record_id
    assert (await services.audit.verify(pending.record_id)).valid is True
    with pytest.raises(RuntimeError):
        services.audit.seal(pending, output_text="again")


async def test_a_record_whose_only_unshielded_wait_is_cancelled_is_logged_all_the_same(
    services: Services, ctx: CallContext
) -> None:
    """The inference path's wait (`receipt_unshielded`): its cancel drops the leaf index, not the
    queued append; the record is committed and verifiable."""
    pending = services.audit.begin_call(ctx, model_id="m", input_text="prompt")
    sealed = services.audit.seal(pending, output_text="the answer")
    waiter = asyncio.ensure_future(sealed.receipt_unshielded())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        try:
            verified = await services.audit.verify(pending.record_id)
            break
        except NotFound:
            assert asyncio.get_running_loop().time() < deadline, "the record was never committed"
            await asyncio.sleep(0.01)
    assert verified.valid is True


async def test_modified_row_fails_verification(services: Services, ctx: CallContext) -> None:
    receipt = await services.audit.record_call(ctx, model_id="m", input_text="in", output_text="out")
    assert (await services.audit.verify(receipt.record_id)).valid is True
    forged = dict(receipt.payload, output_hash="sha256:" + "0" * 64)
    async with services.database.write() as conn:
        await conn.execute(
            update(vaas_records)
            .where(vaas_records.c.id == receipt.record_id)
            .values(payload=canonical(forged).decode())
        )
    assert (await services.audit.verify(receipt.record_id)).valid is False
    assert receipt.leaf_index in (await services.audit.check_log())["altered"]


async def test_re_signed_forgery_is_caught_by_the_log(services: Services, ctx: CallContext) -> None:
    """An insider with the key re-signs a changed record: the log's leaf still shows the original."""
    receipt = await services.audit.record_call(ctx, model_id="m", input_text="in", output_text="out")
    await services.audit.log.checkpoint()
    forged = dict(receipt.payload, output_hash="sha256:" + "1" * 64)
    signature = services.audit._key.sign(canonical(forged)).hex()
    async with services.database.write() as conn:
        await conn.execute(
            update(vaas_records)
            .where(vaas_records.c.id == receipt.record_id)
            .values(payload=canonical(forged).decode(), signature=signature)
        )
    assert (await services.audit.verify(receipt.record_id)).valid is False
    # Rewriting the leaf too changes the root the published checkpoint signed.
    async with services.database.write() as conn:
        await conn.execute(
            update(vaas_log_nodes)
            .where(vaas_log_nodes.c.level == 0, vaas_log_nodes.c.idx == receipt.leaf_index)
            .values(hash=hashlib.sha256(b"\x00" + canonical(forged)).hexdigest())
        )
    assert (await services.audit.verify(receipt.record_id)).valid is False


async def test_dropped_record_is_reported(services: Services, ctx: CallContext) -> None:
    receipt = await services.audit.record_call(ctx, model_id="m", input_text="in", output_text="out")
    pack = (await services.audit.evidence(receipt.record_id)).model_dump(mode="json")
    async with services.database.write() as conn:
        await conn.execute(delete(vaas_records).where(vaas_records.c.id == receipt.record_id))
    report = await services.audit.check_log()
    assert receipt.leaf_index in report["missing"]
    # The holder of the pack can still prove the record was logged.
    assert verify_evidence(pack)["valid"] is True


async def test_concurrent_appends_get_dense_unique_indexes(services: Services, ctx: CallContext) -> None:
    before = await services.audit.log.size()
    receipts = await asyncio.gather(
        *(
            services.audit.record_call(ctx, model_id="m", input_text=str(i), output_text="o")
            for i in range(60)
        )
    )
    assert sorted(r.leaf_index for r in receipts) == list(range(before, before + 60))
    report = await services.audit.check_log()
    assert report["tree_size"] == before + 60
    assert not {r.leaf_index for r in receipts} & set(report["altered"] + report["missing"])
    for receipt in receipts[::15]:
        assert (await services.audit.verify(receipt.record_id)).valid is True


async def test_two_services_on_one_store_share_one_log(
    services: Services, settings: Settings, model_registry: ModelRegistry, ctx: CallContext
) -> None:
    """Two server processes (here: two service sets) appending at once never collide."""
    other = await build_services(settings, registry=model_registry, migrate=False)
    try:
        before = await services.audit.log.size()
        work = [
            s.audit.record_call(ctx, model_id="m", input_text=str(i), output_text="o")
            for i in range(20)
            for s in (services, other)
        ]
        receipts = await asyncio.gather(*work)
        assert sorted(r.leaf_index for r in receipts) == list(range(before, before + 40))
        for receipt in receipts[::7]:
            assert (await other.audit.verify(receipt.record_id)).valid is True
        report = await services.audit.check_log()
        assert not {r.leaf_index for r in receipts} & set(report["altered"] + report["missing"])
    finally:
        await other.close()


async def test_consistency_between_checkpoints(services: Services, ctx: CallContext) -> None:
    await services.audit.record_call(ctx, model_id="m", input_text="a", output_text="b")
    first = await services.audit.log.checkpoint()
    for i in range(3):
        await services.audit.record_call(ctx, model_id="m", input_text=str(i), output_text="b")
    second = await services.audit.log.checkpoint()
    proof = await services.audit.consistency(first.tree_size, second.tree_size)
    assert proof.first_root_hash == first.root_hash
    assert proof.second_root_hash == second.root_hash
    from batchin.core.audit.transparency import verify_consistency

    assert verify_consistency(
        first.tree_size,
        second.tree_size,
        bytes.fromhex(first.root_hash),
        bytes.fromhex(second.root_hash),
        [bytes.fromhex(h) for h in proof.proof],
    )


async def test_key_file_is_private_and_rotation_keeps_old_records_valid(
    settings: Settings, services: Services, ctx: CallContext
) -> None:
    path = key_path(settings)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    old = await services.audit.record_call(ctx, model_id="m", input_text="before", output_text="o")
    rotated = await rotate_key(settings, services.database)
    assert rotated["previous_key_id"] == old.key_id
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    fresh = await AuditService.open(settings, services.database, None)
    try:
        assert fresh.current_key().key_id == rotated["key_id"] != old.key_id
        new = await fresh.record_call(ctx, model_id="m", input_text="after", output_text="o")
        assert new.key_id == rotated["key_id"]
        assert (await fresh.verify(old.record_id)).valid is True
        assert (await fresh.verify(new.record_id)).valid is True
        pack = (await fresh.evidence(old.record_id)).model_dump(mode="json")
        assert pack["key_id"] == old.key_id
        assert third_party_verify(pack)
    finally:
        await fresh.close()


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1),
    st.text(alphabet=st.characters(exclude_categories=["Cs"])),
)


@given(st.dictionaries(st.text(alphabet=st.characters(max_codepoint=127)), _VALUES, max_size=8))
def test_fast_canonical_form_equals_rfc8785(document: dict[str, Any]) -> None:
    assert canonical(document) == rfc8785.dumps(document)


def test_canonical_falls_back_for_other_values() -> None:
    document = {"b": 1.5, "a": [1, {"z": None}], "é": "x"}
    assert canonical(document) == rfc8785.dumps(document)
