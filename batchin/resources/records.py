"""batchin://vaas/{audit_id} (public, like /v1/vaas/{id}); batchin://traces/{trace_id} and
batchin://batches/{batch_id} (yours only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from batchin.core.audit.service import AuditService
from batchin.core.batches.service import BatchService
from batchin.core.traces.service import TraceService
from batchin.mcp_server.caller import current, uses
from batchin.services import Services


@dataclass(frozen=True, slots=True)
class RecordResourceDeps:
    """What the audit record, trace and batch resources use."""

    audit: AuditService
    traces: TraceService
    batches: BatchService

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(audit=services.audit, traces=services.traces, batches=services.batches)


async def audit_record(audit_id: str, deps: RecordResourceDeps = uses(RecordResourceDeps)) -> str:
    """A signed audit record (VaaS): hashes, energy estimate, Ed25519 signature, key id."""
    return (await deps.audit.get(audit_id)).model_dump_json()


async def trace(trace_id: str, deps: RecordResourceDeps = uses(RecordResourceDeps)) -> str:
    """One of your traces with its spans, as /v1/traces/{trace_id} returns it."""
    call = current()
    return (await deps.traces.get_trace(call.ctx.principal.user_id, trace_id)).model_dump_json()


async def batch(batch_id: str, deps: RecordResourceDeps = uses(RecordResourceDeps)) -> str:
    """One of your batches with its counts (and, inline, each task), as /v1/batches/{id} returns it."""
    call = current()
    return (await deps.batches.get(call.ctx.principal.user_id, batch_id)).model_dump_json()
