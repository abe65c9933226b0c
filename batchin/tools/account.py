"""list_models, create_audit_record, verify_audit_record, list_traces, get_trace: read and record
tools over the catalog, audit (VaaS) and trace services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Self

from pydantic import Field

from batchin.core.audit.service import AuditService
from batchin.core.serving.asserted_records import AssertedRecordService
from batchin.core.serving.catalog import CatalogService
from batchin.core.traces.service import MAX_LIST, TraceService
from batchin.mcp_server.caller import current, uses
from batchin.protocol.audit import VaasCreateRequest, VaasRecord, VaasVerification
from batchin.protocol.common import validate
from batchin.protocol.models import ModelList
from batchin.protocol.traces import TraceDetail, TraceItem, TraceList
from batchin.services import Services
from batchin.tools.registry import ToolSpec


@dataclass(frozen=True, slots=True)
class AccountToolDeps:
    """What the catalog, audit and trace tools use."""

    catalog: CatalogService
    audit: AuditService
    asserted_records: AssertedRecordService
    traces: TraceService

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(
            catalog=services.catalog,
            audit=services.audit,
            asserted_records=services.asserted_records,
            traces=services.traces,
        )


async def list_models(deps: AccountToolDeps = uses(AccountToolDeps)) -> ModelList:
    """Every model this server serves: id, kind (chat, completion, embedding, speech, transcription,
    image, video), pricing (in your account's currency) and live status. Use an id as the `model`
    of the other tools."""
    return deps.catalog.list_models(current().ctx.principal.currency)


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


async def list_traces(
    limit: Annotated[
        int, Field(description=f"How many, newest first (1-{MAX_LIST}).", ge=1, le=MAX_LIST)
    ] = 20,
    deps: AccountToolDeps = uses(AccountToolDeps),
) -> TraceList:
    """Your traces, newest first: trace id, model, route, prompt version and audit record of each
    call, as GET /v1/traces lists them. Read one with get_trace."""
    call = current()
    return await deps.traces.list_traces(call.ctx.principal.user_id, limit=limit)


async def get_trace(
    trace_id: Annotated[str, Field(description="32 hex characters, from a call's traceparent.")],
    deps: AccountToolDeps = uses(AccountToolDeps),
) -> TraceDetail:
    """One of your traces: its spans (queueing, time to first token, generation), timings and cost."""
    call = current()
    return await deps.traces.get_trace(call.ctx.principal.user_id, trace_id)


def models_text(models: ModelList) -> str:
    lines = [f"{len(models.data)} models (pass an id as `model`):"]
    lines += [f"- {m.id}: {', '.join(m.kind)}; {m.status}" for m in models.data]
    return "\n".join(lines)


def audit_record_text(record: VaasRecord) -> str:
    return (
        f"Audit record {record.audit_id} for {record.model_id}, signed with key {record.key_id} "
        f"(attestation: {record.attestation or 'served'}). Verify with verify_audit_record."
    )


def verification_text(verification: VaasVerification) -> str:
    verdict = "valid" if verification.valid else "NOT valid"
    return f"Audit record {verification.audit_id}: signature {verdict}."


def _trace_line(trace: TraceItem) -> str:
    facts = [f for f in (trace.model_id, trace.route_id, trace.prompt_version_id) if f]
    return f"{trace.trace_id} ({trace.created_at}): {', '.join(facts) or trace.source}"


def traces_text(traces: TraceList) -> str:
    if not traces.items:
        return "No traces."
    return "\n".join(f"- {_trace_line(t)}" for t in traces.items)


def trace_text(trace: TraceDetail) -> str:
    lines = [f"Trace {_trace_line(trace)}; {len(trace.spans)} spans:"]
    lines += [f"- {s.name}: {s.duration_ms:.1f} ms, {s.status.code}" for s in trace.spans]
    return "\n".join(lines)


TOOLS = [
    ToolSpec(list_models, "List models", read_only=True, scope=None, summary=models_text),
    ToolSpec(create_audit_record, "Create an audit record", scope="audit:write", summary=audit_record_text),
    ToolSpec(
        verify_audit_record, "Verify an audit record", read_only=True, scope=None, summary=verification_text
    ),
    ToolSpec(list_traces, "List traces", read_only=True, scope="account:read", summary=traces_text),
    ToolSpec(get_trace, "Get a trace", read_only=True, scope="account:read", summary=trace_text),
]
