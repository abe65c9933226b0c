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
from batchin.protocol.batches import TERMINAL_STATUSES, Batch, BatchCreateRequest, BatchTask, InlineTask
from batchin.protocol.common import validate
from batchin.services import Services
from batchin.tools.registry import ToolSpec

_POLL_SECONDS = 0.5
_LISTED_TASKS = 20  # a summary names this many tasks; the structured content has them all
_ANSWER_CHARS = 200


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
    while wait and batch.status not in TERMINAL_STATUSES:
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


def batch_line(batch: Batch) -> str:
    counts = batch.request_counts
    return (
        f"Batch {batch.id}: {batch.status}, {counts.completed} of {counts.total} tasks completed, "
        f"{counts.failed} failed."
    )


def batch_text(batch: Batch) -> str:
    """The batch's state, then one line per task (its answer, shortened, once it has one)."""
    lines = [batch_line(batch)]
    tasks = batch.tasks or []
    lines += [f"- {task.custom_id}: {_task_outcome(task)}" for task in tasks[:_LISTED_TASKS]]
    if len(tasks) > _LISTED_TASKS:
        lines.append(f"- … {len(tasks) - _LISTED_TASKS} more tasks in the structured content.")
    if batch.status not in TERMINAL_STATUSES:
        lines.append(f"Subscribe to batchin://batches/{batch.id} or call get_batch to follow it.")
    return "\n".join(lines)


def batches_text(batches: list[Batch]) -> str:
    return "\n".join(batch_line(b) for b in batches) if batches else "No batches."


def _task_outcome(task: BatchTask) -> str:
    if task.error is not None:
        return f"{task.status} ({task.error.code}: {task.error.message})"
    answer = _answer_of(task.result)
    if answer is None:
        return task.status
    short = answer if len(answer) <= _ANSWER_CHARS else answer[: _ANSWER_CHARS - 1] + "…"
    return f"{task.status}: {short}"


def _answer_of(result: dict[str, Any] | None) -> str | None:
    """The generated text of a completed chat or text-completion task, if it is one."""
    choices = (result or {}).get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    text = message.get("content") if isinstance(message, dict) else choices[0].get("text")
    return text if isinstance(text, str) else None


TOOLS = [
    ToolSpec(submit_batch, "Submit a batch", scope="batches", summary=batch_text),
    ToolSpec(get_batch, "Get a batch", read_only=True, scope="batches", summary=batch_text),
    ToolSpec(cancel_batch, "Cancel a batch", idempotent=True, scope="batches", summary=batch_text),
    ToolSpec(list_batches, "List batches", read_only=True, scope="batches", summary=batches_text),
]
