"""MCP resources: read-only views over core calls, tenant-scoped like the HTTP API."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastmcp import FastMCP
from fastmcp.exceptions import ResourceError

from batchin.errors import BatchInError
from batchin.resources import catalog, docs, prompts, records

__all__ = ["ResourceSpec", "register_resources"]


@dataclass(frozen=True, slots=True)
class ResourceSpec:
    uri: str
    function: Callable[..., Awaitable[str]]
    name: str
    mime_type: str = "application/json"


def _mapping_core_errors(function: Callable[..., Awaitable[str]]) -> Callable[..., Awaitable[str]]:
    @functools.wraps(function)
    async def read(*args: object, **kwargs: object) -> str:
        try:
            return await function(*args, **kwargs)
        except BatchInError as exc:
            # The same code and message as HTTP (e.g. "not_found: Trace '…' not found.").
            raise ResourceError(f"{exc.code}: {exc.message}") from None

    return read


ALL_RESOURCES: list[ResourceSpec] = [
    ResourceSpec("batchin://models", catalog.models, "models"),
    ResourceSpec("batchin://models/{model_id}", catalog.model, "model"),
    ResourceSpec("batchin://vaas/{audit_id}", records.audit_record, "audit_record"),
    ResourceSpec("batchin://traces/{trace_id}", records.trace, "trace"),
    ResourceSpec("batchin://prompts", prompts.prompts, "prompts"),
    ResourceSpec("batchin://batches/{batch_id}", records.batch, "batch"),
    ResourceSpec("batchin://docs/llms.txt", docs.llms_txt, "llms.txt", "text/markdown"),
    ResourceSpec("batchin://docs/agents.md", docs.agents_md, "agents.md", "text/markdown"),
]


def register_resources(mcp: FastMCP) -> None:
    for spec in ALL_RESOURCES:
        mcp.resource(spec.uri, name=spec.name, mime_type=spec.mime_type, description=spec.function.__doc__)(
            _mapping_core_errors(spec.function)
        )
