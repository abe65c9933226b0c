"""Batches (`/v1/batches`): OpenAI's Batch object plus the seed's fields.

Two request forms: the seed's inline `tasks` (each `custom_id`, `model`, `request_body`; models may
differ) with `priority` and `webhook_url`, and OpenAI's `input_file_id` + `endpoint` +
`completion_window` (+ `metadata`), whose JSONL lines are `{custom_id, method, url, body}`.

Statuses are OpenAI's (validating, in_progress, finalizing, completed, failed, expired, cancelling,
cancelled) plus the seed's `pending`: an inline batch none of whose tasks has started yet.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from batchin.protocol.common import RequestModel, omitted_if_none
from batchin.protocol.webhooks import WebhookAttempt

BATCH_ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses")
BatchEndpoint = Literal["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"]
BatchPriority = Literal["high", "low", "fill"]
BatchStatus = Literal[
    "pending",
    "validating",
    "in_progress",
    "finalizing",
    "completed",
    "failed",
    "expired",
    "cancelling",
    "cancelled",
]
TaskStatus = Literal["pending", "running", "completed", "failed", "cancelled", "expired"]
TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})

# Purposes of batch files: what callers upload, and what we write back.
BATCH_INPUT = "batch"
BATCH_OUTPUT = "batch_output"

MAX_CUSTOM_ID_LENGTH = 512
MAX_METADATA_PAIRS = 16
_WINDOW = re.compile(r"^([1-9][0-9]{0,5})([smh])$")
_WINDOW_SECONDS = {"s": 1, "m": 60, "h": 3600}
MAX_WINDOW_SECONDS = 7 * 24 * 3600


def window_seconds(window: str) -> int:
    """`24h` → 86400. OpenAI offers only 24h; shorter or longer windows (up to 7 days) are accepted."""
    match = _WINDOW.match(window)
    if match is None:
        raise ValueError("completion_window must look like '24h' (a whole number of s, m or h)")
    seconds = int(match.group(1)) * _WINDOW_SECONDS[match.group(2)]
    if seconds > MAX_WINDOW_SECONDS:
        raise ValueError("completion_window may be at most 168h")
    return seconds


class InlineTask(RequestModel):
    custom_id: str = Field(min_length=1, max_length=MAX_CUSTOM_ID_LENGTH)
    model: str | None = Field(default=None, min_length=1, description="default: request_body.model")
    request_body: dict[str, Any] = Field(description="the body of one call to `url`")
    url: BatchEndpoint | None = Field(default=None, description="default: the batch's endpoint")


class BatchCreateRequest(RequestModel):
    """One of `tasks` (the seed's inline form) or `input_file_id` (OpenAI's file form)."""

    tasks: list[InlineTask] | None = Field(default=None, description="inline tasks (seed form)")
    input_file_id: str | None = Field(
        default=None, min_length=1, description="uploaded JSONL (purpose batch)"
    )
    endpoint: BatchEndpoint | None = Field(
        default=None,
        description="required with input_file_id; default for inline tasks: /v1/chat/completions",
    )
    completion_window: str = Field(default="24h", description="unfinished tasks expire after it")
    priority: BatchPriority = Field(
        default="low", description="high runs before low; fill only on idle capacity"
    )
    webhook_url: str | None = Field(default=None, min_length=1, max_length=2048)
    metadata: dict[str, str] | None = None

    @field_validator("completion_window")
    @classmethod
    def _window(cls, window: str) -> str:
        window_seconds(window)
        return window

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, metadata: dict[str, str] | None) -> dict[str, str] | None:
        if metadata is None:
            return None
        if len(metadata) > MAX_METADATA_PAIRS:
            raise ValueError(f"at most {MAX_METADATA_PAIRS} metadata pairs are allowed")
        for key, value in metadata.items():
            if len(key) > 64 or len(value) > 512:
                raise ValueError("metadata keys are at most 64 characters and values at most 512")
        return metadata

    @model_validator(mode="after")
    def _one_form(self) -> BatchCreateRequest:
        if (self.tasks is None) == (self.input_file_id is None):
            raise ValueError("give either 'tasks' (inline) or 'input_file_id' (a JSONL file), not both")
        if self.tasks is not None and not self.tasks:
            raise ValueError("'tasks' must not be empty")
        if self.input_file_id is not None and self.endpoint is None:
            raise ValueError("'endpoint' is required with 'input_file_id'")
        return self


class BatchError(BaseModel):
    code: str
    message: str
    param: str | None = None
    line: int | None = Field(default=None, description="1-based line of the input file")


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchRequestCounts(BaseModel):
    total: int
    completed: int
    failed: int


class BatchTaskError(BaseModel):
    code: str
    message: str


class BatchTask(BaseModel):
    custom_id: str
    status: TaskStatus
    model: str
    status_code: int | None = None
    result: dict[str, Any] | None = Field(default=None, description="the response body of a completed task")
    error: BatchTaskError | None = None


class Batch(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    # OpenAI's schema types these as strings, integers or an object, never null: absent until set.
    errors: BatchErrors | None = omitted_if_none()
    input_file_id: str | None = Field(default=None, description="null for inline batches (no file)")
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = omitted_if_none()
    error_file_id: str | None = omitted_if_none()
    created_at: int
    in_progress_at: int | None = omitted_if_none()
    expires_at: int | None = omitted_if_none()
    finalizing_at: int | None = omitted_if_none()
    completed_at: int | None = omitted_if_none()
    failed_at: int | None = omitted_if_none()
    expired_at: int | None = omitted_if_none()
    cancelling_at: int | None = omitted_if_none()
    cancelled_at: int | None = omitted_if_none()
    request_counts: BatchRequestCounts
    metadata: dict[str, str] | None = None
    # The seed's fields.
    priority: BatchPriority
    total_tasks: int
    completed_tasks: int
    failed_tasks: int
    webhook_url: str | None = None
    tasks: list[BatchTask] | None = Field(
        default=None, description="per-task status and result (inline batches; file batches page /tasks)"
    )
    webhook_deliveries: list[WebhookAttempt] | None = Field(
        default=None, description="every attempt at delivering this batch's webhook event"
    )


class BatchTaskPage(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchTask]
    last_line: int | None = Field(default=None, description="pass as `after` for the next page")
    has_more: bool
