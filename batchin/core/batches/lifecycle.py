"""A batch's stages around its tasks, driven by one supervisor loop per process.

    load       a file batch (`validating`): scan every line (batch_input.py); any error → `failed`
               with the errors listed; else `in_progress` and its tasks inserted a chunk at a time
               (they start running as they arrive)
    expire     past `expires_at`: its waiting tasks → expired (running ones finish; expiry.py)
    finalize   no task waiting or running → `finalizing` → result files → `completed`, or
               `cancelled` / `expired` when it was cancelled or expired
    notify     the terminal event is queued for its webhook

The loop passes over the unfinished batches every `batch_poll_seconds` while there are any, and
backs off (doubling up to IDLE_POLL_CAP_SECONDS, core/worker.py) while there are none; wake() (a
batch submitted, cancelled or drained here) brings the next pass at once. Lost tasks are looked for
on their own, slower cadence (recovery.py), and so are webhook events a crash left unqueued.

A process holds a batch it loads or finalizes with (claimed_by, lease_until), renewed while it
works; another process takes over a stage whose lease ran out, and resumes it (loading goes on
after the last line stored; finalizing starts again). The terminal status and `webhook_state =
pending` are written in one statement; the event is then queued and marked `enqueued`, and a
`pending` one left by a crash is queued by the next pass. Queuing the same event twice sends it
once (webhooks.py), so every terminal transition is announced exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

from sqlalchemy import and_, or_, select, update

from batchin.config import Settings
from batchin.core.batches.expiry import expire_due, expiring
from batchin.core.batches.input import TaskChecker, load_rows, scan_file
from batchin.core.batches.output import write_results
from batchin.core.batches.recovery import LostTaskWatch
from batchin.core.batches.store import TaskStore
from batchin.core.batches.tasks import PRIORITY_RANK, epoch_ms, now_ms
from batchin.core.batches.view import batch_object
from batchin.core.batches.worker import TaskDispatcher
from batchin.core.clock import utcnow
from batchin.core.media.files import FileService
from batchin.core.worker import IDLE_POLL_CAP_SECONDS, IdleBackoff
from batchin.errors import BatchInError
from batchin.protocol.batches import BatchErrors
from batchin.store.database import Database
from batchin.store.tables import batches

__all__ = ["BatchSupervisor", "BatchWebhooks"]

log = logging.getLogger("batchin.batches")

_RUNNING = ("pending", "in_progress", "cancelling")


class BatchWebhooks(Protocol):
    """What batches need of webhooks (core/webhooks/service.py)."""

    async def check_url(self, url: str) -> None: ...

    async def enqueue(
        self, user_id: str, event_type: str, data: dict[str, Any], url: str, subject_id: str
    ) -> None: ...

    async def attempts_for(self, subject_id: str) -> list[dict[str, Any]]: ...


class BatchSupervisor:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        store: TaskStore,
        dispatcher: TaskDispatcher,
        files: FileService,
        checker: TaskChecker,
        webhooks: BatchWebhooks,
    ) -> None:
        self._settings = settings
        self._db = database
        self._store = store
        self._dispatcher = dispatcher
        self._files = files
        self._checker = checker
        self._webhooks = webhooks
        self._me = dispatcher.worker_id
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._loader: asyncio.Task[None] | None = None
        self._stopping = False
        self._lost = LostTaskWatch(settings, store, dispatcher)
        self._backoff = IdleBackoff(settings.batch_poll_seconds, IDLE_POLL_CAP_SECONDS)

    def wake(self) -> None:
        self._backoff.reset()
        self._wake.set()

    async def start(self) -> None:
        if self._loop is None:
            self._stopping = False
            self._loop = asyncio.get_running_loop().create_task(self._forever(), name="batch-supervisor")

    async def stop(self) -> None:
        tasks = [t for t in (self._loop, self._loader) if t is not None]
        self._loop = self._loader = None
        if not tasks:
            return
        # The flag, not only the cancel, ends the loop: Python 3.11's wait_for drops a
        # cancellation that lands as the wake event fires, and the loop would then poll forever.
        self._stopping = True
        self._wake.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # A stage this process held is free to be taken over at once.
        async with self._db.write() as conn:
            await conn.execute(
                update(batches)
                .where(batches.c.claimed_by == self._me)
                .values(claimed_by=None, lease_until=None)
            )

    async def _forever(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before the pass: a wake() during it is not lost
            busy = True
            try:
                busy = await self.tick()
            except Exception:
                log.exception("batch supervisor: a pass failed")
            if busy:
                self._backoff.reset()
            wait = self._settings.batch_poll_seconds if busy else self._backoff.next_wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(wait, self._lost.seconds_until_due()))

    async def tick(self) -> bool:
        """One pass over every batch not yet finished; True when there was any (the next pass
        comes after the poll interval, not the idle back-off)."""
        looked = await self._lost.look_if_due()
        rows = await self._unfinished()
        if any(expiring(row) for row in rows):
            await expire_due(self._db, self._store, self._dispatcher)
            rows = await self._unfinished()
        stamp = now_ms()
        for row in rows:
            held = row.claimed_by is not None and (row.lease_until or 0) > stamp
            if held:
                continue
            if row.status == "validating" or (row.claimed_by is not None and row.status != "finalizing"):
                self._start_loading(row.id)
            elif row.status == "finalizing" or not await self._store.unfinished(row.id):
                await self.finalize(row.id)
        if looked:  # as rarely as the look for lost tasks: events a crash (or a failure) left
            await self._notify_pending()
        return bool(rows)

    async def _unfinished(self) -> list[Any]:
        c = batches.c
        query = select(c.id, c.status, c.claimed_by, c.lease_until, c.expires_at, c.expired_at).where(
            c.status.in_(("validating", "finalizing", *_RUNNING))
        )
        async with self._db.read() as conn:
            return list((await conn.execute(query)).all())

    # -- leases ----------------------------------------------------------------------------------

    async def _claim(self, batch_id: str, *, statuses: tuple[str, ...], **values: Any) -> bool:
        stamp = now_ms()
        free = or_(batches.c.claimed_by.is_(None), batches.c.lease_until < stamp)
        async with self._db.write() as conn:
            result = await conn.execute(
                update(batches)
                .where(batches.c.id == batch_id, batches.c.status.in_(statuses), free)
                .values(claimed_by=self._me, lease_until=stamp + self._lease_ms, **values)
            )
        return bool(result.rowcount == 1)

    @property
    def _lease_ms(self) -> int:
        return int(self._settings.batch_lease_seconds * 1000)

    @contextlib.asynccontextmanager
    async def _holding(self, batch_id: str) -> AsyncIterator[None]:
        """Renew this process's lease on the batch while the block runs."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(self._settings.batch_lease_seconds / 3)
                with contextlib.suppress(Exception):
                    await self._mine(batch_id, lease_until=now_ms() + self._lease_ms)

        renewer = asyncio.get_running_loop().create_task(renew())
        try:
            yield
        finally:
            renewer.cancel()
            # wait(), not `await renewer` under suppress(CancelledError): that would also swallow
            # a cancellation of this task arriving meanwhile.
            await asyncio.wait({renewer})

    async def _mine(self, batch_id: str, *, statuses: tuple[str, ...] | None = None, **values: Any) -> bool:
        """Update the batch only while this process holds it (and it is in one of `statuses`)."""
        where = [batches.c.id == batch_id, batches.c.claimed_by == self._me]
        if statuses is not None:
            where.append(batches.c.status.in_(statuses))
        async with self._db.write() as conn:
            result = await conn.execute(update(batches).where(*where).values(**values))
        return bool(result.rowcount == 1)

    async def _row(self, batch_id: str) -> dict[str, Any]:
        async with self._db.read() as conn:
            row = (await conn.execute(select(batches).where(batches.c.id == batch_id))).mappings().one()
        return dict(row)

    # -- load ------------------------------------------------------------------------------------

    def _start_loading(self, batch_id: str) -> None:
        if self._loader is not None and not self._loader.done():
            return  # one file at a time per process: scanning is CPU work
        self._loader = asyncio.get_running_loop().create_task(
            self._load(batch_id), name=f"batch-load-{batch_id}"
        )

    async def _load(self, batch_id: str) -> None:
        if not await self._claim(batch_id, statuses=("validating", *_RUNNING)):
            return
        try:
            async with self._holding(batch_id):
                await self._load_held(await self._row(batch_id))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("batch %s: loading its input failed (another pass will resume it)", batch_id)
            return
        await self._mine(batch_id, claimed_by=None, lease_until=None)
        self._dispatcher.wake()
        self.wake()

    async def _load_held(self, row: dict[str, Any]) -> None:
        batch_id = row["id"]
        if row["form"] != "file" or row["input_file_id"] is None:
            return  # an inline batch's tasks came with it
        try:
            content = await self._files.content(row["user_id"], row["input_file_id"])
        except BatchInError as exc:
            await self._fail_validation(row, [{"code": "input_file_missing", "message": exc.message}])
            return
        if row["status"] == "validating":
            scan = await asyncio.to_thread(
                scan_file,
                content.path,
                row["endpoint"],
                self._checker,
                max_tasks=self._settings.batch_max_tasks,
            )
            if scan.error_count:
                await self._fail_validation(row, [e.model_dump() for e in scan.listed()])
                return
            started = await self._mine(
                batch_id,
                statuses=("validating",),
                status="in_progress",
                in_progress_at=utcnow(),
                total_tasks=scan.lines,
            )
            if not started:  # cancelled while it was being checked: none of its tasks will run
                return
        await self._insert_rows(row, content.path)

    async def _insert_rows(self, row: dict[str, Any], path: Any) -> None:
        batch_id, priority, created_ms = (
            row["id"],
            PRIORITY_RANK[row["priority"]],
            epoch_ms(row["created_at"]),
        )

        def make_row(line: int, custom_id: str, endpoint: str, model: str, body: str) -> tuple[Any, ...]:
            return (batch_id, line, custom_id, endpoint, model, body, priority, "pending", created_ms, 0, 0)

        start = await self._store.last_line(batch_id) + 1
        chunks = load_rows(path, row["endpoint"], self._checker, start=start, make_row=make_row)
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            status = await self._waiting_status(batch_id)
            if status != "pending":
                chunk = [(*r[:7], status, *r[8:]) for r in chunk]
            await self._store.insert(chunk)
            self._dispatcher.wake()

    async def _waiting_status(self, batch_id: str) -> str:
        """What a task joining the batch now starts as: pending, or cancelled / expired."""
        async with self._db.read() as conn:
            query = select(batches.c.cancelling_at, batches.c.expired_at).where(batches.c.id == batch_id)
            row = (await conn.execute(query)).one()
        return (
            "cancelled"
            if row.cancelling_at is not None
            else "expired"
            if row.expired_at is not None
            else "pending"
        )

    async def _fail_validation(self, row: dict[str, Any], errors: list[dict[str, Any]]) -> None:
        failed = await self._mine(
            row["id"],
            statuses=("validating",),
            status="failed",
            failed_at=utcnow(),
            errors_json=BatchErrors.model_validate({"data": errors}).model_dump_json(),
            claimed_by=None,
            lease_until=None,
            webhook_state="pending" if row["webhook_url"] else None,
        )
        if failed:
            await self._notify(row["id"])

    # -- finalize --------------------------------------------------------------------------------

    async def finalize(self, batch_id: str) -> bool:
        """Write the result files and end the batch; False when another process holds it or it is
        not ready. Call only once no task of the batch waits or runs."""
        stamp = now_ms()
        taken = and_(batches.c.status.in_(_RUNNING), batches.c.claimed_by.is_(None))
        abandoned = and_(batches.c.status == "finalizing", batches.c.lease_until < stamp)
        async with self._db.write() as conn:
            claimed = await conn.execute(
                update(batches)
                .where(batches.c.id == batch_id, or_(taken, abandoned))
                .values(
                    status="finalizing",
                    finalizing_at=utcnow(),
                    claimed_by=self._me,
                    lease_until=stamp + self._lease_ms,
                )
            )
        if claimed.rowcount != 1:
            return False
        async with self._holding(batch_id):
            row = await self._row(batch_id)
            files = await write_results(self._store, self._files, batch_id, row["user_id"])
        final = "cancelled" if row["cancelling_at"] else "expired" if row["expired_at"] else "completed"
        ended = await self._mine(
            batch_id,
            statuses=("finalizing",),
            status=final,
            **{f"{final}_at": row["expired_at"] if final == "expired" else utcnow()},
            output_file_id=files.output_file_id,
            error_file_id=files.error_file_id,
            completed_tasks=files.tally.completed,
            failed_tasks=files.tally.failed,
            claimed_by=None,
            lease_until=None,
            webhook_state="pending" if row["webhook_url"] else None,
        )
        if ended:
            await self._notify(batch_id)
        return ended

    # -- notify ----------------------------------------------------------------------------------

    async def _notify(self, batch_id: str) -> None:
        row = await self._row(batch_id)
        if row["webhook_state"] != "pending" or not row["webhook_url"]:
            return
        data = batch_object(row).model_dump(mode="json", exclude={"tasks", "webhook_deliveries"})
        try:
            await self._webhooks.enqueue(
                row["user_id"], f"batch.{row['status']}", data, row["webhook_url"], subject_id=batch_id
            )
        except Exception:
            log.exception("batch %s: queuing its webhook failed (a later pass tries again)", batch_id)
            return
        async with self._db.write() as conn:
            await conn.execute(
                update(batches).where(batches.c.id == batch_id).values(webhook_state="enqueued")
            )

    async def _notify_pending(self) -> None:
        async with self._db.read() as conn:
            query = select(batches.c.id).where(
                batches.c.webhook_state == "pending",
                batches.c.status.in_(("completed", "failed", "expired", "cancelled")),
            )
            pending = [r[0] for r in (await conn.execute(query)).all()]
        for batch_id in pending:
            await self._notify(batch_id)
