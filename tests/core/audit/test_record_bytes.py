"""An audit record's signed bytes: the fast canonical form of our own payloads is RFC 8785's, and a
record begun with the model's catalog entry says what one begun by its name says."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import VerifyKey

from batchin.core.audit.canonical import canonical, canonical_of_our_keys
from batchin.core.audit.service import AuditUsage
from batchin.core.context import CallContext, Principal
from batchin.core.trace_context import continue_trace
from batchin.services import Services
from tests.conftest import MakeUser

MODEL = "smollm2-135m-instruct"

_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # past +/-(2^53-1) too: those go to the reference implementation
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),  # lone surrogates too: orjson refuses them, the reference decides
)


@given(st.dictionaries(st.text(alphabet=st.characters(max_codepoint=127)), _VALUES, max_size=8))
def test_our_keys_form_equals_rfc8785(document: dict[str, Any]) -> None:
    try:
        expected = rfc8785.dumps(document)
    except Exception as refused:  # the reference refuses some values (ints past 2^53): so must we
        with pytest.raises(type(refused)):
            canonical_of_our_keys(document)
        return
    assert canonical_of_our_keys(document) == expected


@pytest.fixture
async def ctx(make_user: MakeUser) -> CallContext:
    user = await make_user()
    principal = Principal(user.id, "key-1", "bk_test", 600, None)
    return CallContext(principal=principal, request_id="req-1", trace=continue_trace(None))


async def test_a_record_begun_with_its_entry_says_what_one_begun_by_name_says(
    services: Services, ctx: CallContext
) -> None:
    audit, entry = services.audit, services.registry.entry(MODEL)
    usage = AuditUsage(input_tokens=12, output_tokens=40)
    by_name = audit.begin_call(ctx, model_id=MODEL, input_text="in")
    with_entry = audit.begin_call(ctx, model_id=MODEL, input_text="in", entry=entry)
    receipts = [
        await audit.finish(pending, output_text="out", usage=usage) for pending in (by_name, with_entry)
    ]
    differ = {"record_id", "started_at", "finished_at"}
    first, second = ({k: v for k, v in r.payload.items() if k not in differ} for r in receipts)
    assert first == second
    assert first["provider"] == "batchin-managed"
    assert first["energy_method"] == "estimate:cpu-llm-small"
    for receipt in receipts:
        signed = canonical(receipt.payload)
        assert signed == rfc8785.dumps(receipt.payload)
        VerifyKey(bytes.fromhex(receipt.public_key_hex)).verify(signed, bytes.fromhex(receipt.signature_hex))
        assert (await audit.verify(receipt.record_id)).valid is True
