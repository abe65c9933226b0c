"""Write-behind recording of attributed text calls: run counts and a bounded sample of each
version's runs (the inputs experiments replay).

The inference path calls `record` when a call succeeds: it appends one small object to an
in-memory buffer and never waits. A background task writes the buffer in batches, one transaction
each: registries and versions seen for the first time are created (auto-backfill; see
registry.py for what a new version sets off), run counts are added, and, only in registries whose
owner opted in to experiments, the newest `prompt_samples_per_version` chat runs of each version are
kept (their conversation text is what experiments replay). The buffer is bounded like the
trace buffer: if the store falls behind, the oldest runs are dropped and counted. Reads flush first,
so callers see their own calls at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import orjson
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from batchin.config import Settings
from batchin.core.clock import utcnow
from batchin.core.prompts.attribution import Attribution
from batchin.core.prompts.labels import DocumentSigner
from batchin.core.prompts.registry import add_version, ensure_registry, experiments_enabled
from batchin.core.write_behind import BufferStats, WriteBehind
from batchin.models.base import ChatMessage
from batchin.store.database import Database
from batchin.store.tables import prompt_registries, prompt_samples, prompt_versions

__all__ = ["FinishedRun", "PromptRecorder", "PromptRun"]

log = logging.getLogger("batchin.prompts")


@dataclass(frozen=True, slots=True)
class PromptRun:
    """An attributed call, captured when it starts."""

    attribution: Attribution
    user_id: str
    key_id: str
    model_id: str
    messages: tuple[ChatMessage, ...] | None  # chat calls only: what an experiment can replay
    max_tokens: int
    temperature: float


@dataclass(frozen=True, slots=True)
class FinishedRun:
    run: PromptRun
    output_text: str
    latency_ms: int  # engine time (admitted → finished), so queueing does not count
    cost_units: int
    finished_at: datetime


class PromptRecorder:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        signer: DocumentSigner,
        *,
        batch_runs: int = 1000,
    ) -> None:
        self._settings = settings
        self._db = database
        self._signer = signer
        self._buffer: WriteBehind[FinishedRun] = WriteBehind(
            self._write_and_notify,
            capacity=settings.prompt_buffer_runs,
            batch=batch_runs,
            interval=settings.prompt_flush_seconds,
            what="prompt runs",
            log=log,
        )
        # Told after a commit that queued experiments (the experiment worker's wake-up).
        self.on_new_experiments: Callable[[], None] | None = None

    def record(self, run: PromptRun, *, output_text: str, latency_ms: int, cost_units: int) -> None:
        """Queue one finished call; never waits. Call from the event loop."""
        self._buffer.offer(FinishedRun(run, output_text, latency_ms, cost_units, utcnow()))

    async def flush(self) -> None:
        """Write everything queued so far."""
        await self._buffer.flush()

    async def close(self) -> None:
        await self._buffer.close()

    async def _write_and_notify(self, batch: list[FinishedRun]) -> None:
        if await self._write(batch) and self.on_new_experiments is not None:
            self.on_new_experiments()

    def buffer_stats(self) -> dict[str, BufferStats]:
        """The write-behind buffer's counts by name, for /metrics."""
        return {"prompt_runs": self._buffer.stats()}

    def stats(self) -> dict[str, int]:
        return {
            "pending_runs": self._buffer.pending,
            "written_runs": self._buffer.written,
            "dropped_runs": self._buffer.dropped,
            "failed_runs": self._buffer.failed,
        }

    # -- one batch, one transaction ------------------------------------------------------------

    async def _write(self, batch: list[FinishedRun]) -> int:
        """Returns how many experiments the batch queued."""
        versions: dict[tuple[str, str], list[FinishedRun]] = {}
        for finished in batch:
            run = finished.run
            versions.setdefault((run.user_id, run.attribution.version_id), []).append(finished)
        # Registries in a fixed order, so two processes writing at once lock rows in the same order;
        # versions of one registry in order of appearance (the first one seen becomes the baseline).
        ordered = sorted(versions.items(), key=lambda kv: (kv[0][0], kv[1][0].run.attribution.registry_id))
        now, queued = utcnow(), 0
        async with self._db.write() as conn:
            for (user_id, version_id), runs in ordered:
                first = runs[0].run
                registry_id = first.attribution.registry_id
                await ensure_registry(
                    conn,
                    user_id=user_id,
                    registry_id=registry_id,
                    display_name=first.attribution.display_name,
                    source="auto_backfill",
                    now=now,
                )
                created = await add_version(
                    conn,
                    self._signer,
                    self._settings,
                    user_id=user_id,
                    key_id=first.key_id,
                    registry_id=registry_id,
                    version_id=version_id,
                    source="auto_backfill",
                    template=first.attribution.system_text,
                    variables=[],
                    now=now,
                )
                queued += 1 if created is not None and created.experiment_id else 0
                await _count(conn, user_id, registry_id, version_id, len(runs), now)
                if await experiments_enabled(conn, user_id, registry_id):
                    await self._keep_samples(conn, user_id, version_id, runs)
        return queued

    async def _keep_samples(
        self, conn: AsyncConnection, user_id: str, version_id: str, runs: list[FinishedRun]
    ) -> None:
        keep = self._settings.prompt_samples_per_version
        chats = [r for r in runs if r.run.messages is not None][-keep:] if keep else []
        if not chats:
            return
        await conn.execute(insert(prompt_samples), [_sample_row(user_id, version_id, r) for r in chats])
        of_version = (prompt_samples.c.user_id == user_id) & (prompt_samples.c.version_id == version_id)
        oldest_kept = await conn.scalar(
            select(prompt_samples.c.id)
            .where(of_version)
            .order_by(prompt_samples.c.id.desc())
            .offset(keep - 1)
            .limit(1)
        )
        if oldest_kept is not None:
            await conn.execute(delete(prompt_samples).where(of_version, prompt_samples.c.id < oldest_kept))


async def _count(
    conn: AsyncConnection, user_id: str, registry_id: str, version_id: str, runs: int, now: datetime
) -> None:
    await conn.execute(
        update(prompt_versions)
        .where(prompt_versions.c.user_id == user_id, prompt_versions.c.version_id == version_id)
        .values(total_runs=prompt_versions.c.total_runs + runs, last_seen_at=now)
    )
    await conn.execute(
        update(prompt_registries)
        .where(prompt_registries.c.user_id == user_id, prompt_registries.c.registry_id == registry_id)
        .values(total_runs=prompt_registries.c.total_runs + runs)
    )


def _sample_row(user_id: str, version_id: str, finished: FinishedRun) -> dict[str, object]:
    run = finished.run
    messages = [{"role": m.role, "content": m.content} for m in run.messages or ()]
    return {
        "user_id": user_id,
        "version_id": version_id,
        "model_id": run.model_id,
        "messages": orjson.dumps(messages).decode(),
        "output_text": finished.output_text,
        "max_tokens": run.max_tokens,
        "temperature": run.temperature,
        "latency_ms": finished.latency_ms,
        "cost_units": finished.cost_units,
        "created_at": finished.finished_at,
    }
