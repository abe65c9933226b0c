"""The batch task dispatcher: started with the app, one per server process, any number per store.

It claims pending tasks in chunks (highest priority first) under a lease it renews while they run,
and holds at most `batch_max_in_flight` of them. Per model, at most the model's `max_concurrency`
tasks call it at once; the others wait here, in a priority queue (a `high` task claimed later
goes before a waiting `low` one), not in the model's admission queue, where interactive calls go
first anyway. While more than a chunk waits here it claims no more, so a slow model never
hoards a backlog that a later, higher-priority batch would queue behind. A task whose batch was
cancelled or expired meanwhile is not started. Each task is one call through the ordinary core
(batch_calls.py) on behalf of the key that created the batch, at the batch price. A `fill` task's
call holds its model slot preemptibly (serving/admission.py): a call of higher priority that has to
wait takes it, the attempt is released uncharged (Preempted) and the task runs again at once,
without using up a retry.

Exactly once, including across SIGKILL:
- a task's attempt n reserves under a derived id (tasks.reservation_id(batch, task, n));
- success settles that reservation and marks the task completed in ONE transaction, conditional
  on the task still being this worker's attempt n; a worker that lost the task cannot complete it
  (its settlement rolls back and its reservation is released);
- a task whose worker died (lease run out, or at start-up a dead process on this host) goes back
  to pending after its attempt's reservation is released; it runs again under attempt n+1.
So each task is billed once, by the transaction that records its one result. On SQLite the
settlements of the tasks that finish while the writer commits are written as one block, in one
transaction (the ledger's settle_block): a crash loses the whole uncommitted block, whose tasks
run again like any other lost task; each task's guard still decides its own settlement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import orjson
from sqlalchemy import select, update

from batchin.config import Settings
from batchin.core.accounts.principals import principal_of
from batchin.core.batches.calls import BatchCalls, classify
from batchin.core.batches.store import TaskStore
from batchin.core.batches.tasks import ClaimedTask, reservation_id
from batchin.core.billing.ledger import LedgerService
from batchin.core.billing.ledger_records import SettlementRefused
from batchin.core.billing.metering import succeeded_call
from batchin.core.clock import utcnow
from batchin.core.context import BatchBilling, CallContext, Principal
from batchin.core.serving.admission import AdmissionPool, Priority
from batchin.core.serving.catalog import price_ratio
from batchin.core.worker import DurableWorker, dead_here, new_worker_id
from batchin.errors import BatchInError, Unauthorized
from batchin.models.registry import ModelRegistry
from batchin.store.database import Database
from batchin.store.tables import api_keys, batches, users

__all__ = ["TaskDispatcher", "new_worker_id"]

log = logging.getLogger("batchin.batches")

_BATCH_SECONDS = 1.0  # how long what a batch is (payer, cancelled?) is trusted before it is read again


@dataclass(frozen=True, slots=True)
class _BatchState:
    payer: Principal | None  # None: the key that created it was revoked or deleted
    stopped: str | None  # "cancelled" or "expired" once waiting tasks must not start


@dataclass(slots=True)
class _Cached:
    state: asyncio.Future[_BatchState]
    until: float


def _loaded(state: asyncio.Future[_BatchState]) -> bool:
    return state.done() and not state.cancelled() and state.exception() is None


class TaskDispatcher(DurableWorker[ClaimedTask]):
    def __init__(
        self,
        settings: Settings,
        database: Database,
        store: TaskStore,
        ledger: LedgerService,
        registry: ModelRegistry,
        calls: BatchCalls,
        on_drained: Callable[[], None],
    ) -> None:
        super().__init__(
            name="batch-dispatch",
            log=log,
            worker_id=new_worker_id(),
            poll_seconds=settings.batch_poll_seconds,
            max_in_flight=settings.batch_max_in_flight,
            renew_seconds=settings.batch_lease_seconds / 3,
        )
        self._settings = settings
        self._db = database
        self._store = store
        self._ledger = ledger
        self._registry = registry
        self._calls = calls
        self._on_drained = on_drained
        self._max = settings.batch_max_in_flight
        self._chunk = min(settings.batch_claim_chunk, self._max)
        self._least = max(1, self._chunk // 4)  # claim in chunks, not one task per freed slot
        self._waiting = 0  # claimed tasks waiting here for a model slot
        self._gates: dict[str, AdmissionPool] = {}
        self._ratios: dict[str, Fraction] = {}
        self._batches: dict[str, _Cached] = {}
        self._started: set[str] = set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def stop(self) -> None:
        """Stop claiming, stop the running tasks (their reservations are released, nothing is
        charged) and hand them back to pending at once."""
        was_running = self.running
        await super().stop()
        if was_running:
            await self._store.hand_back(self.worker_id)

    # -- claiming (DurableWorker) ----------------------------------------------------------------

    def _capacity(self) -> int:
        room = self._max - len(self._in_flight)
        if room < self._least or self._waiting > self._chunk:
            return 0
        return min(room, self._chunk)

    async def _claim_items(self, limit: int) -> list[ClaimedTask]:
        tasks = await self._store.claim(
            self.worker_id,
            limit,
            lease_seconds=self._settings.batch_lease_seconds,
            max_priority=int(Priority.FILL),
        )
        batch_ids = {t.batch_id for t in tasks}
        await self._mark_started(batch_ids)
        # Known before the tasks start, so they reach their model's queue in claim order.
        await asyncio.gather(*(self._batch(b) for b in batch_ids), return_exceptions=True)
        return tasks

    async def _process(self, task: ClaimedTask) -> None:
        await self._execute(task)

    def _work_finished(self) -> None:
        if self._caught_up:  # the queue looked empty: the batch may be done
            self._on_drained()

    async def _renew_leases(self) -> None:
        await self._store.renew(self.worker_id, self._settings.batch_lease_seconds)

    async def _mark_started(self, batch_ids: set[str]) -> None:
        """An inline batch is `pending` until one of its tasks is claimed (once per batch here)."""
        fresh = batch_ids - self._started
        if not fresh:
            return
        if len(self._started) > 10_000:
            self._started.clear()
        self._started |= fresh
        try:
            async with self._db.write() as conn:
                await conn.execute(
                    update(batches)
                    .where(batches.c.id.in_(fresh), batches.c.status == "pending")
                    .values(status="in_progress", in_progress_at=utcnow())
                )
        except Exception:
            log.exception("batch dispatcher: marking batches in progress failed")

    # -- one task --------------------------------------------------------------------------------

    async def _execute(self, task: ClaimedTask) -> None:
        billing: BatchBilling | None = None
        closed = False
        try:
            priority = Priority(task.priority)
            async with self._model_slot(task.model, priority):
                state = await self._batch(task.batch_id)
                if state.stopped is not None:
                    await self._store.stop(task, self.worker_id, state.stopped)
                    return
                if state.payer is None:
                    raise Unauthorized("The API key that created this batch has been revoked.")
                ctx = CallContext(principal=state.payer, request_id=task.request_id)
                billing = ctx.billing = BatchBilling(self._ratio(task.model), task.reservation_id)
                body: dict[str, Any] = orjson.loads(task.body)
                response = await self._calls.call(ctx, task.endpoint, body, priority)
            closed = await self._complete(task, billing, response)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not isinstance(exc, BatchInError):
                log.warning("batch task %s (%s) failed: %r", task.id, task.custom_id, exc)
            await self._failed(task, exc)
        finally:
            succeeded = None if billing is None else succeeded_call(billing)
            if succeeded is not None and not closed:
                # Succeeded but not recorded (lost the task, or stopped): nothing is charged.
                await asyncio.shield(self._ledger.release(succeeded.reservation))

    async def _complete(self, task: ClaimedTask, billing: BatchBilling, response: bytes) -> bool:
        """Settle and record in one transaction. True when the reservation is closed either way."""
        call = succeeded_call(billing)
        if call is None:
            raise RuntimeError(f"the call of batch task {task.id} finished without a metered call")
        guard = self._store.complete_guard(
            task,
            self.worker_id,
            status_code=200,
            response=response.decode(),
            cost_units=call.charged_units or 0,
        )
        try:
            await self._ledger.settle_guarded(call.reservation, call.usage("succeeded"), guard)
        except SettlementRefused:
            log.warning("batch task %s was taken over before it finished; its result is dropped", task.id)
            return False
        return True  # charged now, or the reservation was already released by a takeover

    async def _failed(self, task: ClaimedTask, exc: Exception) -> None:
        s = self._settings
        verdict = classify(
            exc,
            failures=task.failures,
            max_retries=s.batch_max_retries,
            base_delay=s.batch_retry_base_seconds,
        )
        try:
            if verdict.final:
                await self._store.fail(
                    task,
                    self.worker_id,
                    status_code=verdict.status_code,
                    response=verdict.body,
                    code=verdict.code,
                    message=verdict.message,
                )
            elif await self._store.retry(
                task,
                self.worker_id,
                delay_seconds=verdict.delay,
                counts=verdict.counts,
                code=verdict.code,
                message=verdict.message,
            ):
                self._wake_in(verdict.delay)  # due then: not left to the idle poll
        except Exception:
            log.exception(
                "batch task %s: recording its failure failed (its lease will bring it back)", task.id
            )

    @contextlib.asynccontextmanager
    async def _model_slot(self, model: str, priority: Priority) -> AsyncIterator[None]:
        """One of this process's slots for the model, counted as waiting until it is given."""
        self._waiting += 1
        waiting = True
        try:
            async with self._gate(model).slot(priority):
                self._waiting, waiting = self._waiting - 1, False
                self._capacity_changed()
                yield
        finally:
            if waiting:
                self._waiting -= 1
                self._capacity_changed()

    def _gate(self, model: str) -> AdmissionPool:
        """This process's share of the model: its max_concurrency, waiters served by priority."""
        gate = self._gates.get(model)
        if gate is None:
            try:
                size = self._registry.entry(model).max_concurrency
            except BatchInError:
                size = 1  # the call will say what is wrong with the model
            gate = self._gates[model] = AdmissionPool(f"batch:{model}", size, self._max)
        return gate

    def _ratio(self, model: str) -> Fraction:
        ratio = self._ratios.get(model)
        if ratio is None:
            ratio = self._ratios[model] = price_ratio(
                self._registry.entry(model), self._settings.batch_price_ratio
            )
        return ratio

    def forget(self, batch_id: str) -> None:
        """The batch changed here (cancelled): read it again before the next task starts."""
        self._batches.pop(batch_id, None)

    async def _batch(self, batch_id: str) -> _BatchState:
        """Who pays for the batch and whether it still runs: one read per batch per second,
        shared by all the tasks that ask meanwhile."""
        cached = self._batches.get(batch_id)
        if cached is not None and cached.until >= time.monotonic() and _loaded(cached.state):
            return cached.state.result()  # the common case: no shield (a future and a task) per task
        if cached is None or cached.until < time.monotonic():
            if len(self._batches) > 10_000:
                self._batches.clear()
            loading = asyncio.ensure_future(self._load_batch(batch_id))
            cached = self._batches[batch_id] = _Cached(loading, time.monotonic() + _BATCH_SECONDS)
        try:
            return await asyncio.shield(cached.state)
        except Exception:
            self._batches.pop(batch_id, None)  # a failed read is not remembered
            raise

    async def _load_batch(self, batch_id: str) -> _BatchState:
        k = api_keys.c
        query = (
            select(batches.c.cancelling_at, batches.c.expired_at, batches.c.user_id)
            .add_columns(
                k.id,
                k.key_prefix,
                k.rate_limit_rpm,
                k.monthly_budget_cents,
                k.scopes,
                k.models,
                k.regions,
                k.is_active,
                users.c.currency,
            )
            .outerjoin(api_keys, k.id == batches.c.key_id)
            .join(users, users.c.id == batches.c.user_id)
            .where(batches.c.id == batch_id)
        )
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return _BatchState(None, "cancelled")
        stopped = (
            "cancelled"
            if row.cancelling_at is not None
            else "expired"
            if row.expired_at is not None
            else None
        )
        # The batch's owner pays, through the key that created it, while that key is active.
        payer = principal_of(row) if row.is_active else None
        return _BatchState(payer, stopped)

    # -- recovery (called by the supervisor) -----------------------------------------------------

    async def recover_lost(self, *, include_dead_here: bool) -> int:
        """Tasks whose worker is gone go back to pending (or fail after too many losses); the
        reservation of their interrupted attempt is released first, so it is never charged."""
        rows = await self._store.lost()
        if include_dead_here:
            dead = [w for w in await self._store.claimers() if w != self.worker_id and dead_here(w)]
            known = {row.id for row in rows}
            rows += [row for row in await self._store.running_of(dead) if row.id not in known]
        for row in rows:
            held = await self._ledger.load(reservation_id(row.batch_id, row.id, row.attempts))
            if held is not None:
                await self._ledger.release(held)
        if not rows:
            return 0
        changed = await self._store.reclaim(rows, max_retries=self._settings.batch_max_retries)
        if changed:
            log.warning("batch: %d tasks of lost workers are pending again", changed)
            self.wake()
        return changed
