"""list_models, usage_summary, create_audit_record, verify_audit_record, get_trace: read and record
tools over the catalog, usage, audit (VaaS) and trace services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Self

from pydantic import Field

from batchin.core.audit.service import AuditService
from batchin.core.billing.usage import UsageService
from batchin.core.serving.asserted_records import AssertedRecordService
from batchin.core.serving.catalog import CatalogService
from batchin.core.traces.service import TraceService
from batchin.mcp_server.caller import current, uses
from batchin.protocol.audit import VaasCreateRequest, VaasRecord, VaasVerification
from batchin.protocol.common import validate
from batchin.protocol.models import ModelList
from batchin.protocol.traces import TraceDetail
from batchin.protocol.usage import UsageSummary
from batchin.services import Services
from batchin.tools.registry import ToolSpec


@dataclass(frozen=True, slots=True)
class AccountToolDeps:
    """What the catalog, usage, audit and trace tools use."""

    catalog: CatalogService
    usage: UsageService
    audit: AuditService
    asserted_records: AssertedRecordService
    traces: TraceService

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(
            catalog=services.catalog,
            usage=services.usage,
            audit=services.audit,
            asserted_records=services.asserted_records,
            traces=services.traces,
        )


async def list_models(deps: AccountToolDeps = uses(AccountToolDeps)) -> ModelList:
    """Every model this server serves: id, kind (chat, completion, embedding, speech, transcription,
    image, video), pricing and live status. Use an id as the `model` of the other tools."""
    return deps.catalog.list_models()


async def usage_summary(deps: AccountToolDeps = uses(AccountToolDeps)) -> UsageSummary:
    """This API key's user: requests, tokens and cost so far (cost in cents)."""
    call = current()
    return await deps.usage.summary(call.ctx.principal.user_id)


async def create_audit_record(
    input_text: Annotated[str, Field(description="The input to attest (hashed, never stored).")],
    output_text: Annotated[str, Field(description="The output to attest (hashed, never stored).")],
    model_id: Annotated[str, Field(description="The model (or step, e.g. 'human-review') that produced it.")],
    gpu_id: Annotated[str | None, Field(description="Execution environment label (optional).")] = None,
    deps: AccountToolDeps = uses(AccountToolDeps),
) -> VaasRecord:
    """Create an Ed25519-signed audit record (VaaS) of an input/output pair you supply, appended to the
    public transparency log and marked `attestation: caller_asserted` with your user id (it vouches
    that you asserted the texts, not that this server produced them). Billed per record. Anyone can
    verify it at /v1/vaas/{audit_id}/verify or with verify_audit_record."""
    call = current()
    fields = {"input_text": input_text, "output_text": output_text, "model_id": model_id, "gpu_id": gpu_id}
    return await deps.asserted_records.create(call.ctx, validate(VaasCreateRequest, fields))


async def verify_audit_record(
    audit_id: Annotated[
        str, Field(description="The record's id (from create_audit_record or X-VaaS-Record-Id).")
    ],
    deps: AccountToolDeps = uses(AccountToolDeps),
) -> VaasVerification:
    """Check an audit record's Ed25519 signature against the published key: valid true or false."""
    return await deps.audit.verify(audit_id)


async def get_trace(
    trace_id: Annotated[str, Field(description="32 hex characters, from a call's traceparent.")],
    deps: AccountToolDeps = uses(AccountToolDeps),
) -> TraceDetail:
    """One of your traces: its spans (queueing, time to first token, generation), timings and cost."""
    call = current()
    return await deps.traces.get_trace(call.ctx.principal.user_id, trace_id)


TOOLS = [
    ToolSpec(list_models, "List models", read_only=True, scope=None),
    ToolSpec(usage_summary, "Usage summary", read_only=True, scope="account:read"),
    ToolSpec(create_audit_record, "Create an audit record", scope="audit:write"),
    ToolSpec(verify_audit_record, "Verify an audit record", read_only=True, scope=None),
    ToolSpec(get_trace, "Get a trace", read_only=True, scope="account:read"),
]
