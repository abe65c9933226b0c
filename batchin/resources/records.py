"""batchin://vaas/{audit_id} (public, like /v1/vaas/{id}); batchin://traces/{trace_id} and
batchin://batches/{batch_id} (yours only)."""

from __future__ import annotations

from batchin.mcp_server.caller import current


async def audit_record(audit_id: str) -> str:
    """A signed audit record (VaaS): hashes, energy estimate, Ed25519 signature, key id."""
    return (await current().services.audit.get(audit_id)).model_dump_json()


async def trace(trace_id: str) -> str:
    """One of your traces with its spans, as /v1/traces/{trace_id} returns it."""
    call = current()
    return (await call.services.traces.get_trace(call.ctx.principal.user_id, trace_id)).model_dump_json()


async def batch(batch_id: str) -> str:
    """One of your batches with its counts (and, inline, each task), as /v1/batches/{id} returns it."""
    call = current()
    return (await call.services.batches.get(call.ctx.principal.user_id, batch_id)).model_dump_json()
