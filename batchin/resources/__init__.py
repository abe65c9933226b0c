"""MCP resources: read-only views over core calls, tenant-scoped like the HTTP API, each needing
the key scope its HTTP twin needs (None for what HTTP serves publicly). A template whose spec has
`candidates` completes its one parameter (completion/complete) with the caller's own values."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastmcp import FastMCP
from fastmcp.exceptions import ResourceError

from batchin.core.permissions import require_scope
from batchin.errors import BatchInError
from batchin.mcp_server.caller import McpCall, current
from batchin.protocol.accounts import Scope
from batchin.resources import catalog, docs, prompts, records

__all__ = ["ALL_RESOURCES", "ResourceSpec", "register_resources"]


@dataclass(frozen=True, slots=True)
class ResourceSpec:
    uri: str
    function: Callable[..., Awaitable[str]]
    name: str
    scope: Scope | None
    mime_type: str = "application/json"
    # The values its template parameter may take for this caller (completion/complete).
    candidates: Callable[[McpCall], Awaitable[list[str]]] | None = None


def _guarded(function: Callable[..., Awaitable[str]], scope: Scope | None) -> Callable[..., Awaitable[str]]:
    @functools.wraps(function)
    async def read(*args: object, **kwargs: object) -> str:
        try:
            if scope is not None:
                require_scope(current().ctx.principal, scope)
            return await function(*args, **kwargs)
        except BatchInError as exc:
            # The same code and message as HTTP (e.g. "not_found: Trace '…' not found.").
            raise ResourceError(f"{exc.code}: {exc.message}") from None

    return read


ALL_RESOURCES: list[ResourceSpec] = [
    ResourceSpec("batchin://models", catalog.models, "models", None),
    ResourceSpec("batchin://models/{model_id}", catalog.model, "model", None, candidates=catalog.model_ids),
    ResourceSpec("batchin://vaas/{audit_id}", records.audit_record, "audit_record", None),
    ResourceSpec(
        "batchin://traces/{trace_id}", records.trace, "trace", "account:read", candidates=records.trace_ids
    ),
    ResourceSpec("batchin://prompts", prompts.prompts, "prompts", "account:read"),
    ResourceSpec(
        "batchin://prompts/{name}",
        prompts.prompt_template,
        "prompt_template",
        "account:read",
        candidates=prompts.prompt_names,
    ),
    ResourceSpec(
        "batchin://batches/{batch_id}", records.batch, "batch", "batches", candidates=records.batch_ids
    ),
    ResourceSpec(
        "batchin://videos/{video_id}", records.video, "video", "inference", candidates=records.video_ids
    ),
    ResourceSpec("batchin://docs/llms.txt", docs.llms_txt, "llms.txt", None, "text/markdown"),
    ResourceSpec("batchin://docs/agents.md", docs.agents_md, "agents.md", None, "text/markdown"),
]


def register_resources(mcp: FastMCP) -> None:
    for spec in ALL_RESOURCES:
        mcp.resource(spec.uri, name=spec.name, mime_type=spec.mime_type, description=spec.function.__doc__)(
            _guarded(spec.function, spec.scope)
        )
