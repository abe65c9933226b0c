"""submit_batch, get_batch, cancel_batch, list_batches: the seed's inline /v1/batches form. With
wait=true, submit_batch reports progress notifications (tasks done / total) until the batch ends."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self

from fastmcp import Context
from pydantic import Field

from batchin.core.batches.service import BatchService
from batchin.mcp_server.caller import current, uses
from batchin.protocol.batches import Batch, BatchCreateRequest, InlineTask
from batchin.protocol.common import validate
from batchin.services import Services
from batchin.tools.registry import ToolSpec

_POLL_SECONDS = 0.5
_TERMINAL = ("completed", "failed", "expired", "cancelled")


@dataclass(frozen=True, slots=True)
class BatchToolDeps:
    """What the batch tools use."""

    batches: BatchService

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(batches=services.batches)


async def submit_batch(
    mcp_context: Context,
    tasks: Annotated[
        list[InlineTask],
        Field(
            description="Tasks: {custom_id, model, request_body}; request_body is a chat-completions "
            "body ({messages: [...], max_tokens?}); models may differ between tasks.",
            min_length=1,
        ),
    ],
    priority: Annotated[
        Literal["high", "low", "fill"],
        Field(description="high runs before low; fill only uses capacity interactive traffic leaves idle."),
    ] = "low",
    webhook_url: Annotated[
        str | None,
        Field(description="Public https URL called (Standard Webhooks signed) when the batch ends."),
    ] = None,
    wait: Annotated[
        bool,
        Field(description="Wait until the batch ends, with progress notifications, and return its results."),
    ] = False,
    deps: BatchToolDeps = uses(BatchToolDeps),
) -> Batch:
    """Run many model calls as one durable batch, billed at the batch price. Returns the batch
    (status, counts; per-task status and result once done). Without wait, poll get_batch."""
    call = current()
    fields: dict[str, Any] = {"tasks": tasks, "priority": priority}
    if webhook_url is not None:
        fields["webhook_url"] = webhook_url
    batch = await deps.batches.submit(call.ctx, validate(BatchCreateRequest, fields))
    user_id = call.ctx.principal.user_id
    while wait and batch.status not in _TERMINAL:
        done = batch.request_counts.completed + batch.request_counts.failed
        await mcp_context.report_progress(
            done, batch.request_counts.total, f"batch {batch.id}: {batch.status}"
        )
        await asyncio.sleep(_POLL_SECONDS)
        batch = await deps.batches.get(user_id, batch.id)
    if wait:
        done = batch.request_counts.completed + batch.request_counts.failed
        await mcp_context.report_progress(
            done, batch.request_counts.total, f"batch {batch.id}: {batch.status}"
        )
    return batch


async def get_batch(
    batch_id: Annotated[str, Field(description="The id submit_batch returned.")],
    deps: BatchToolDeps = uses(BatchToolDeps),
) -> Batch:
    """A batch's status and counts, and for inline batches each task's status and result."""
    call = current()
    return await deps.batches.get(call.ctx.principal.user_id, batch_id)


async def cancel_batch(
    batch_id: Annotated[str, Field(description="The batch to cancel.")],
    deps: BatchToolDeps = uses(BatchToolDeps),
) -> Batch:
    """Cancel a batch: waiting tasks stop, running ones finish; finished results are kept (and billed)."""
    call = current()
    return await deps.batches.cancel(call.ctx.principal.user_id, batch_id)


async def list_batches(
    limit: Annotated[int, Field(description="How many, newest first (1-100).", ge=1, le=100)] = 20,
    deps: BatchToolDeps = uses(BatchToolDeps),
) -> list[Batch]:
    """Your batches, newest first, with status and counts."""
    call = current()
    return await deps.batches.list(call.ctx.principal.user_id, limit=limit)


TOOLS = [
    ToolSpec(submit_batch, "Submit a batch", scope="batches"),
    ToolSpec(get_batch, "Get a batch", read_only=True, scope="batches"),
    ToolSpec(cancel_batch, "Cancel a batch", idempotent=True, scope="batches"),
    ToolSpec(list_batches, "List batches", read_only=True, scope="batches"),
]
