"""batchin://vaas/{audit_id} (public, like /v1/vaas/{id}); batchin://traces/{trace_id},
batchin://batches/{batch_id} and batchin://videos/{video_id} (yours only), with the completion
candidates of their ids (your newest ones)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from batchin.core.audit.service import AuditService
from batchin.core.batches.service import BatchService
from batchin.core.media.videos import VideoService
from batchin.core.traces.service import MAX_LIST, TraceService
from batchin.mcp_server.caller import McpCall, current, uses
from batchin.services import Services


@dataclass(frozen=True, slots=True)
class RecordResourceDeps:
    """What the audit record, trace, batch and video resources use."""

    audit: AuditService
    traces: TraceService
    batches: BatchService
    videos: VideoService

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(
            audit=services.audit, traces=services.traces, batches=services.batches, videos=services.videos
        )


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


async def video(video_id: str, deps: RecordResourceDeps = uses(RecordResourceDeps)) -> str:
    """One of your video jobs (status, progress, signed output_url), as /v1/videos/{id} returns it."""
    call = current()
    return (await deps.videos.get(call.ctx.principal.user_id, video_id)).model_dump_json()


_NEWEST = 100  # completion candidates: the caller's newest ids


async def trace_ids(call: McpCall) -> list[str]:
    traces = call.views.get(RecordResourceDeps).traces
    found = await traces.list_traces(call.ctx.principal.user_id, limit=min(_NEWEST, MAX_LIST))
    return [t.trace_id for t in found.items]


async def batch_ids(call: McpCall) -> list[str]:
    batches = call.views.get(RecordResourceDeps).batches
    return [b.id for b in await batches.list(call.ctx.principal.user_id, limit=_NEWEST)]


async def video_ids(call: McpCall) -> list[str]:
    videos = call.views.get(RecordResourceDeps).videos
    return [v.id for v in (await videos.list(call.ctx.principal.user_id, limit=_NEWEST)).data]
