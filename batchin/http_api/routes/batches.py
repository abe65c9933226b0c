"""/v1/batches: parse, call core, render. One create route takes both forms (inline tasks or an
uploaded file); the JSON body is limited to 2 MB (413 payload_too_large), as the seed says."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from starlette.requests import Request
from starlette.responses import Response

from batchin.core.batches.service import BatchService
from batchin.core.context import CallContext
from batchin.http_api.endpoint import Endpoint, QueryParam
from batchin.http_api.paging import render_page
from batchin.http_api.rendering import parse_json, query_int, render
from batchin.protocol.batches import Batch, BatchCreateRequest, BatchTaskPage
from batchin.services import Services


@dataclass(frozen=True, slots=True)
class BatchDeps:
    """What /v1/batches* use."""

    batches: BatchService
    max_body_bytes: int

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(batches=services.batches, max_body_bytes=services.settings.max_body_bytes)


async def create_batch(request: Request, ctx: CallContext, deps: BatchDeps) -> Response:
    body = await parse_json(request, BatchCreateRequest, deps.max_body_bytes)
    batch = await deps.batches.submit(ctx, body)
    return render(batch)


async def list_batches(request: Request, ctx: CallContext, deps: BatchDeps) -> Response:
    found = await deps.batches.page(
        ctx.principal.user_id,
        limit=query_int(request, "limit", 100),
        after=request.query_params.get("after") or None,
    )
    return render_page(request, found)


async def retrieve_batch(request: Request, ctx: CallContext, deps: BatchDeps) -> Response:
    batch = await deps.batches.get(ctx.principal.user_id, request.path_params["batch_id"])
    return render(batch)


async def list_batch_tasks(request: Request, ctx: CallContext, deps: BatchDeps) -> Response:
    page = await deps.batches.tasks(
        ctx.principal.user_id,
        request.path_params["batch_id"],
        after=query_int(request, "after", -1),
        limit=query_int(request, "limit", 100),
    )
    return render(page)


async def cancel_batch(request: Request, ctx: CallContext, deps: BatchDeps) -> Response:
    batch = await deps.batches.cancel(ctx.principal.user_id, request.path_params["batch_id"])
    return render(batch)


_ID = "/v1/batches/{batch_id}"

ENDPOINTS = [
    Endpoint(
        "POST",
        "/v1/batches",
        create_batch,
        "Submit a batch: inline `tasks` (models may differ; `priority` high, low or fill; `webhook_url`) "
        "or OpenAI's `input_file_id` + `endpoint` + `completion_window`. Billed per task at the batch price.",
        request_model=BatchCreateRequest,
        response_model=Batch,
        deps=BatchDeps,
        tag="batches",
        errors=(400, 404, 413),
        scope="batches",
    ),
    Endpoint(
        "GET",
        "/v1/batches",
        list_batches,
        "The caller's batches, newest first (a bare array); when more exist, a "
        '`Link: <...>; rel="next"` header names the next page.',
        response_model=list[Batch],
        deps=BatchDeps,
        tag="batches",
        query=(
            QueryParam("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "page size (default 100)"),
            QueryParam("after", {"type": "string"}, "a batch id: list the batches created before it"),
        ),
        scope="batches",
    ),
    Endpoint(
        "GET",
        _ID,
        retrieve_batch,
        "One batch with its counts; an inline batch lists each task's status and result.",
        response_model=Batch,
        deps=BatchDeps,
        tag="batches",
        errors=(404,),
        scope="batches",
    ),
    Endpoint(
        "GET",
        f"{_ID}/tasks",
        list_batch_tasks,
        "A batch's tasks in input order, paged (status, result or error of each).",
        response_model=BatchTaskPage,
        deps=BatchDeps,
        tag="batches",
        query=(
            QueryParam(
                "limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size (default 100)"
            ),
            QueryParam("after", {"type": "integer"}, "the last_line of the previous page"),
        ),
        errors=(400, 404),
        scope="batches",
    ),
    Endpoint(
        "POST",
        f"{_ID}/cancel",
        cancel_batch,
        "Cancel: waiting tasks stop, running ones finish (and are billed); ends `cancelled`.",
        response_model=Batch,
        deps=BatchDeps,
        tag="batches",
        errors=(400, 404),
        scope="batches",
    ),
]
