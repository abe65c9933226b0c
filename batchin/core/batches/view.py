"""A batch row (and its live task counts) as the Batch object callers see."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from batchin.protocol.batches import (
    TERMINAL_STATUSES,
    Batch,
    BatchErrors,
    BatchRequestCounts,
    BatchTask,
    BatchTaskError,
)

__all__ = ["batch_object", "epoch", "task_object"]


def epoch(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite hands back naive datetimes that are UTC
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def batch_object(row: Mapping[str, Any], counts: Mapping[str, int] | None = None) -> Batch:
    """`counts` (tasks per status) while the batch runs; a finished batch carries its own."""
    if row["status"] in TERMINAL_STATUSES or counts is None:
        completed, failed = row["completed_tasks"], row["failed_tasks"]
    else:
        completed, failed = counts.get("completed", 0), counts.get("failed", 0)
    total = row["total_tasks"]
    errors = row["errors_json"]
    metadata = row["metadata_json"]
    return Batch(
        id=row["id"],
        endpoint=row["endpoint"],
        errors=BatchErrors.model_validate_json(errors) if errors else None,
        input_file_id=row["input_file_id"],
        completion_window=row["completion_window"],
        status=row["status"],
        output_file_id=row["output_file_id"],
        error_file_id=row["error_file_id"],
        created_at=epoch(row["created_at"]) or 0,
        in_progress_at=epoch(row["in_progress_at"]),
        expires_at=epoch(row["expires_at"]),
        finalizing_at=epoch(row["finalizing_at"]),
        completed_at=epoch(row["completed_at"]),
        failed_at=epoch(row["failed_at"]),
        expired_at=epoch(row["expired_at"]),
        cancelling_at=epoch(row["cancelling_at"]),
        cancelled_at=epoch(row["cancelled_at"]),
        request_counts=BatchRequestCounts(total=total, completed=completed, failed=failed),
        metadata=orjson.loads(metadata) if metadata else None,
        priority=row["priority"],
        total_tasks=total,
        completed_tasks=completed,
        failed_tasks=failed,
        webhook_url=row["webhook_url"],
    )


def task_object(row: Any) -> BatchTask:
    """A task row (line, custom_id, model, status, status_code, response, error_code, error_message)."""
    error = None
    if row.status == "failed":
        error = BatchTaskError(code=row.error_code or "failed", message=row.error_message or "")
    elif row.status in ("cancelled", "expired"):
        error = BatchTaskError(
            code=f"batch_{row.status}", message=f"The batch was {row.status} before this task ran."
        )
    result = orjson.loads(row.response) if row.response and row.status == "completed" else None
    return BatchTask(
        custom_id=row.custom_id,
        status=row.status,
        model=row.model,
        status_code=row.status_code,
        result=result,
        error=error,
    )
