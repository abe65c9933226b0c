"""Batches: many calls, run later, at a discount, exactly once each.

    submit   inline tasks (the seed's form; checked in the request, 400 naming the task) or an
             uploaded JSONL file (OpenAI's form; checked line by line in the background, the batch
             `failed` with every error listed if any line is wrong) → rows in the store
    run      tasks/batch_worker.py: claimed by any server process, each one call through the
             ordinary core on behalf of the key that created the batch, at the batch price
    finish   batch_lifecycle.py: result files (OpenAI's output/error JSONL) and the terminal
             status; a webhook event for it when the batch has a webhook_url
    get      the batch with live counts (counts.py: a count of n finished tasks is reused
             for n * 5 µs, at most 5 s); inline batches list every task with its status and
             result (and are counted from that list), a file batch's tasks are paged at
             /v1/batches/{id}/tasks
    cancel   waiting tasks are cancelled, running ones finish (and are billed), → `cancelled`

Defaults and choices where the seed is open: `priority` defaults to `low`; a batch's status uses
OpenAI's names, plus `pending` for an inline batch none of whose tasks has started; the inline
form's endpoint is /v1/chat/completions unless `endpoint` (or a task's `url`) says otherwise.
Another tenant's batch, like a missing one, is 404.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import insert, select, update

from batchin.config import Settings
from batchin.core.batches.calls import BatchCalls
from batchin.core.batches.counts import LiveCounts
from batchin.core.batches.input import TaskChecker
from batchin.core.batches.lifecycle import BatchSupervisor, BatchWebhooks
from batchin.core.batches.store import TaskStore
from batchin.core.batches.tasks import PRIORITY_RANK, epoch_ms
from batchin.core.batches.view import batch_object, task_object
from batchin.core.batches.worker import TaskDispatcher
from batchin.core.billing.ledger import LedgerService
from batchin.core.clock import utcnow
from batchin.core.context import CallContext
from batchin.core.media.embeddings import EmbeddingsService
from batchin.core.media.files import FileService
from batchin.core.paging import Page, page_of
from batchin.core.permissions import may_use_model
from batchin.core.random_ids import uuid7_text
from batchin.core.serving.inference import InferenceService
from batchin.errors import InvalidRequest, NotFound, PermissionDenied
from batchin.models.registry import ModelRegistry
from batchin.protocol.batches import (
    BATCH_INPUT,
    TERMINAL_STATUSES,
    Batch,
    BatchCreateRequest,
    BatchTaskPage,
    window_seconds,
)
from batchin.protocol.webhooks import WebhookAttempt
from batchin.store.database import Database
from batchin.store.tables import batch_tasks, batches

__all__ = ["BatchService"]

_DEFAULT_ENDPOINT = "/v1/chat/completions"
_CANCELLABLE = ("validating", "pending", "in_progress")
MAX_PAGE = 1000


class BatchService:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        registry: ModelRegistry,
        ledger: LedgerService,
        inference: InferenceService,
        embeddings: EmbeddingsService,
        files: FileService,
        webhooks: BatchWebhooks,
    ) -> None:
        self._settings = settings
        self._db = database
        self._files = files
        self._webhooks = webhooks
        self._store = TaskStore(database, ledger.sqlite_writer)
        self._counts = LiveCounts(self._store)
        self._registry = registry
        self._checker = TaskChecker(registry)
        self.dispatcher = TaskDispatcher(
            settings,
            database,
            self._store,
            ledger,
            registry,
            BatchCalls(inference, embeddings),
            self._drained,
        )
        self.supervisor = BatchSupervisor(
            settings, database, self._store, self.dispatcher, files, self._checker, webhooks
        )

    def _drained(self) -> None:
        self.supervisor.wake()

    # -- lifecycle (the app's lifespan calls these) --------------------------------------------

    async def start(self) -> None:
        await self.dispatcher.start()
        await self.supervisor.start()

    async def stop(self) -> None:
        await self.supervisor.stop()
        await self.dispatcher.stop()

    # -- operations ------------------------------------------------------------------------------

    async def submit(self, ctx: CallContext, request: BatchCreateRequest) -> Batch:
        if request.webhook_url is not None:
            await self._webhooks.check_url(request.webhook_url)
        now = utcnow()
        row: dict[str, Any] = {
            # Time-ordered (version 7): its tasks' derived ids are ordered too (tasks.ordered_ids).
            "id": uuid7_text(),
            "user_id": ctx.principal.user_id,
            "key_id": ctx.principal.key_id,
            "endpoint": request.endpoint or _DEFAULT_ENDPOINT,
            "input_file_id": request.input_file_id,
            "completion_window": request.completion_window,
            "priority": request.priority,
            "webhook_url": request.webhook_url,
            "metadata_json": orjson.dumps(request.metadata).decode()
            if request.metadata is not None
            else None,
            "completed_tasks": 0,
            "failed_tasks": 0,
            "request_id": ctx.request_id,
            "created_at": now,
            "expires_at": now + timedelta(seconds=window_seconds(request.completion_window)),
        }
        if request.input_file_id is not None:
            await self._submit_file(ctx, row, request.input_file_id)
        else:
            await self._submit_inline(ctx, row, request)
        return batch_object(_with_times(row), {})

    async def _submit_file(self, ctx: CallContext, row: dict[str, Any], file_id: str) -> None:
        try:
            stored = await self._files.get(ctx.principal.user_id, file_id)
        except NotFound:
            raise NotFound(f"No such file: '{file_id}'.", param="input_file_id") from None
        if stored.purpose != BATCH_INPUT:
            raise InvalidRequest(
                f"File '{file_id}' has purpose '{stored.purpose}'; a batch needs a file of purpose 'batch'.",
                param="input_file_id",
            )
        row.update(form="file", status="validating", total_tasks=0)
        async with self._db.write() as conn:
            await conn.execute(insert(batches).values(**row))
        self.supervisor.wake()

    async def _submit_inline(
        self, ctx: CallContext, row: dict[str, Any], request: BatchCreateRequest
    ) -> None:
        tasks = request.tasks or []
        if len(tasks) > self._settings.batch_max_tasks:
            raise InvalidRequest(
                f"A batch may hold at most {self._settings.batch_max_tasks} tasks.", param="tasks"
            )
        seen: set[str] = set()
        rank, created_ms = PRIORITY_RANK[request.priority], epoch_ms(row["created_at"])
        rows: list[dict[str, Any]] = []
        for index, task in enumerate(tasks):
            if task.custom_id in seen:
                raise InvalidRequest(
                    f"tasks[{index}]: custom_id {task.custom_id!r} is used more than once.",
                    param=f"tasks[{index}].custom_id",
                )
            seen.add(task.custom_id)
            endpoint, model, body = self._checker.inline(index, task, row["endpoint"])
            # Refused up front, as the HTTP call would be; a file batch's tasks meet the same check
            # when they run (and fail with permission_denied, never retried).
            if not may_use_model(ctx.principal, model, *self._registry.entry(model).names):
                raise PermissionDenied(
                    f"tasks[{index}]: this API key may not call model '{model}'.",
                    param=f"tasks[{index}].model",
                )
            rows.append(
                {
                    "batch_id": row["id"],
                    "line": index,
                    "custom_id": task.custom_id,
                    "endpoint": endpoint,
                    "model": model,
                    "body": orjson.dumps(body).decode(),
                    "priority": rank,
                    "status": "pending",
                    "next_attempt_at": created_ms,
                    "attempts": 0,
                    "failures": 0,
                }
            )
        row.update(form="inline", status="pending", total_tasks=len(rows))
        async with self._db.write() as conn:  # the batch and all its tasks, or nothing
            await conn.execute(insert(batches).values(**row))
            await conn.execute(insert(batch_tasks), rows)
        self.dispatcher.wake()

    async def get(self, user_id: str, batch_id: str) -> Batch:
        row = await self._row(user_id, batch_id)
        if row["form"] == "inline":
            rows = await self._store.page(batch_id, after=-1, limit=row["total_tasks"] + 1)
            tasks = [task_object(t) for t in rows]
            batch = batch_object(row, Counter(t.status for t in tasks))  # counted from its list
            batch.tasks = tasks
        else:
            batch = await self._with_counts(row)
        if row["webhook_url"]:
            attempts = await self._webhooks.attempts_for(batch_id)
            batch.webhook_deliveries = [WebhookAttempt.model_validate(a) for a in attempts]
        return batch

    async def progress(self, user_id: str, batch_id: str) -> Batch:
        """The batch's status and counts without its tasks: the cheap read that progress watchers
        (MCP resource subscriptions) repeat."""
        return await self._with_counts(await self._row(user_id, batch_id))

    async def _with_counts(self, row: dict[str, Any]) -> Batch:
        if row["status"] in TERMINAL_STATUSES:
            return batch_object(row)  # a finished batch carries its own counts
        return batch_object(row, (await self._counts.of([row["id"]]))[row["id"]])

    async def page(self, user_id: str, *, limit: int = 100, after: str | None = None) -> Page[Batch]:
        """A page of `list`, with the query of the next page when there is one."""
        found = await self.list(user_id, limit=limit, after=after, probe=1)
        return page_of(found, limit, lambda last: {"limit": str(limit), "after": last.id})

    async def list(
        self, user_id: str, *, limit: int = 20, after: str | None = None, probe: int = 0
    ) -> list[Batch]:
        """The caller's batches, newest first (`after`: a batch id, to page on; `probe` rows beyond
        `limit` tell a page whether more exist)."""
        if not 1 <= limit <= 100:
            raise InvalidRequest("limit must be between 1 and 100.", param="limit")
        query = select(batches).where(batches.c.user_id == user_id)
        if after is not None:
            anchor = await self._row(user_id, after)
            query = query.where(
                (batches.c.created_at < anchor["created_at"])
                | ((batches.c.created_at == anchor["created_at"]) & (batches.c.id < anchor["id"]))
            )
        query = query.order_by(batches.c.created_at.desc(), batches.c.id.desc()).limit(limit + probe)
        async with self._db.read() as conn:
            rows = [dict(r) for r in (await conn.execute(query)).mappings().all()]
        live = [r["id"] for r in rows if r["status"] not in TERMINAL_STATUSES]
        counts = await self._counts.of(live)
        return [batch_object(r, counts.get(r["id"])) for r in rows]

    async def tasks(self, user_id: str, batch_id: str, *, after: int = -1, limit: int = 100) -> BatchTaskPage:
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}.", param="limit")
        await self._row(user_id, batch_id)
        rows = await self._store.page(batch_id, after=after, limit=limit + 1)
        page = rows[:limit]
        return BatchTaskPage(
            data=[task_object(r) for r in page],
            last_line=page[-1].line if page else None,
            has_more=len(rows) > limit,
        )

    async def cancel(self, user_id: str, batch_id: str) -> Batch:
        """Waiting tasks are cancelled at once; running ones finish and are billed. The batch ends
        `cancelled` once none runs: at once when none was running (the answer says `cancelled`)."""
        async with self._db.write() as conn:
            result = await conn.execute(
                update(batches)
                .where(
                    batches.c.id == batch_id, batches.c.user_id == user_id, batches.c.status.in_(_CANCELLABLE)
                )
                .values(status="cancelling", cancelling_at=utcnow())
            )
        row = await self._row(user_id, batch_id)
        if result.rowcount != 1 and row["status"] in TERMINAL_STATUSES:
            raise InvalidRequest(f"Batch '{batch_id}' is already {row['status']}.", param="batch_id")
        self.dispatcher.forget(batch_id)  # its claimed tasks here must not start now
        self._counts.forget(batch_id)
        await self._store.settle_waiting(batch_id, "cancelled")
        # Nothing running and no process loading it (inline or file form alike): it ends here, so
        # the answer is `cancelled` (the seed). Else `cancelling` until the started tasks finish.
        idle = row["claimed_by"] is None and not await self._store.unfinished(batch_id)
        if not (idle and await self.supervisor.finalize(batch_id)):
            self.supervisor.wake()
        return await self.get(user_id, batch_id)

    async def _row(self, user_id: str, batch_id: str) -> dict[str, Any]:
        async with self._db.read() as conn:
            query = select(batches).where(batches.c.id == batch_id, batches.c.user_id == user_id)
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            raise NotFound(f"No such batch: '{batch_id}'.", param="batch_id")
        return dict(row)


def _with_times(row: dict[str, Any]) -> dict[str, Any]:
    """A freshly inserted row as the store would return it (unset columns are null)."""
    filled = {column.name: None for column in batches.columns}
    filled.update(row)
    return filled
