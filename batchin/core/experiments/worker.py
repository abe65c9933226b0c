"""Runs queued experiments: claim → pick samples → replay each → regression → promotion decision.

Durable and resumable: an experiment is claimed by one process at a time (`claimed_by`, a lease in
`lease_until` renewed after every sample); its samples are chosen once, at the first claim, and
copied into prompt_replays rows, each marked done as soon as it is judged. A process that dies
leaves a running experiment whose lease expires; the next claim (by any process) replays only the
samples not yet done. The conclusion (regression row, experiment verdict, label move) is one
transaction, written only while the claim still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any

import orjson
from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from batchin.config import Settings
from batchin.core.accounts.principals import principal_of
from batchin.core.clock import utcnow
from batchin.core.context import CallContext, Principal
from batchin.core.experiments.conclusion import conclude, fail
from batchin.core.experiments.judges import DeterministicReplayJudge, EmbeddingSimilarityJudge, Judge
from batchin.core.experiments.replay import Replayed, Replayer, TemplateMismatch, with_template
from batchin.core.media.embeddings import EmbeddingsService
from batchin.core.prompts.labels import DocumentSigner
from batchin.core.prompts.registry import experiments_enabled
from batchin.core.serving.inference import InferenceService
from batchin.core.worker import DurableWorker
from batchin.errors import BatchInError, InvalidRequest, RateLimited
from batchin.store.database import Database
from batchin.store.tables import (
    api_keys,
    prompt_experiments,
    prompt_replays,
    prompt_samples,
    prompt_versions,
    users,
)

__all__ = ["ExperimentWorker"]

log = logging.getLogger("batchin.experiments")

_MAX_RATE_LIMIT_WAITS = 20  # a fill-priority replay refused for a full queue waits and tries again


class _ClaimLost(Exception):
    """Another process took the experiment over (our lease expired): stop without writing."""


class _CannotRun(Exception):
    """The experiment cannot be judged at all (no samples, no key, engine down): its reason."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class ExperimentWorker(DurableWorker[Any]):
    def __init__(
        self,
        settings: Settings,
        database: Database,
        inference: InferenceService,
        embeddings: EmbeddingsService,
        signer: DocumentSigner,
    ) -> None:
        super().__init__(
            name="experiment-worker",
            log=log,
            worker_id=f"pexpw_{secrets.token_hex(6)}",
            poll_seconds=settings.prompt_experiment_poll_seconds,
        )
        self._settings = settings
        self._db = database
        self._signer = signer
        self._replayer = Replayer(inference, seed=settings.prompt_replay_seed)
        self._judges: dict[str, Judge] = {
            "deterministic_replay": DeterministicReplayJudge(),
            "embedding_similarity": EmbeddingSimilarityJudge(
                embeddings, settings.prompt_judge_embedding_model, settings.prompt_similarity_threshold
            ),
        }

    # -- the loop (DurableWorker): one experiment at a time --------------------------------------
    # A stop cancels the running experiment; it resumes from its done samples after its lease.

    async def _claim_items(self, limit: int) -> list[Any]:
        experiment = await self._claim_next()
        return [] if experiment is None else [experiment]

    async def _process(self, experiment: Any) -> None:
        with contextlib.suppress(_ClaimLost):
            await self._run(experiment)

    async def run_pending(self) -> int:
        """Run every experiment that is due now, one after another; returns how many were run."""
        ran = 0
        while (experiment := await self._claim_next()) is not None:
            with contextlib.suppress(_ClaimLost):
                await self._run(experiment)
            ran += 1
        return ran

    # -- claiming --------------------------------------------------------------------------------

    def _due(self, now_ms: int) -> Any:
        c = prompt_experiments.c
        return or_(c.status == "queued", (c.status == "running") & (c.lease_until < now_ms))

    async def _claim_next(self) -> Any | None:
        for _ in range(5):  # another process may claim the one we picked; pick again
            now_ms = _now_ms()
            async with self._db.write() as conn:
                found = await conn.scalar(
                    select(prompt_experiments.c.id)
                    .where(self._due(now_ms))
                    .order_by(prompt_experiments.c.created_at, prompt_experiments.c.id)
                    .limit(1)
                )
                if found is None:
                    return None
                claimed = await conn.execute(
                    update(prompt_experiments)
                    .where(prompt_experiments.c.id == found, self._due(now_ms))
                    .values(
                        status="running",
                        claimed_by=self.worker_id,
                        lease_until=now_ms + self._lease_ms(),
                        started_at=func.coalesce(prompt_experiments.c.started_at, utcnow()),
                    )
                )
                if claimed.rowcount == 1:
                    row = (
                        await conn.execute(select(prompt_experiments).where(prompt_experiments.c.id == found))
                    ).one()
                    return row
        return None

    def _lease_ms(self) -> int:
        return int(self._settings.prompt_experiment_lease_seconds * 1000)

    async def _renew(self, conn: AsyncConnection, experiment_id: str) -> None:
        renewed = await conn.execute(
            update(prompt_experiments)
            .where(
                prompt_experiments.c.id == experiment_id, prompt_experiments.c.claimed_by == self.worker_id
            )
            .values(lease_until=_now_ms() + self._lease_ms())
        )
        if renewed.rowcount != 1:
            raise _ClaimLost(experiment_id)

    # -- running ---------------------------------------------------------------------------------

    async def _run(self, experiment: Any) -> None:
        # A replay at fill priority may wait long for a slot: keep the claim alive meanwhile.
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(experiment.id))
        try:
            await self._run_claimed(experiment)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _heartbeat(self, experiment_id: str) -> None:
        while True:
            await asyncio.sleep(self._settings.prompt_experiment_lease_seconds / 3)
            try:
                async with self._db.write() as conn:
                    await self._renew(conn, experiment_id)
            except _ClaimLost:
                return  # the run notices too, at its next write
            except Exception:
                log.exception("could not renew the lease of experiment %s", experiment_id)

    async def _run_claimed(self, experiment: Any) -> None:
        try:
            await self._require_opt_in(experiment)
            templates = await self._templates(experiment)
            await self._choose_samples(experiment)
            principal = await self._owner(experiment)
            async with self._db.read() as conn:
                pending = (
                    await conn.execute(
                        select(prompt_replays)
                        .where(
                            prompt_replays.c.experiment_id == experiment.id,
                            prompt_replays.c.status == "pending",
                        )
                        .order_by(prompt_replays.c.position)
                    )
                ).all()
            for replay in pending:
                await self._replay_one(experiment, principal, replay, templates)
        except _CannotRun as reason:
            await self._conclude(experiment, error=str(reason))
            return
        await self._conclude(experiment)

    async def _require_opt_in(self, experiment: Any) -> None:
        """Checked when an experiment is picked up (or resumed): one queued before its registry was
        opted out, or before opt-in existed (migration 0013), spends nothing."""
        async with self._db.read() as conn:
            enabled = await experiments_enabled(conn, experiment.user_id, experiment.registry_id)
        if not enabled:
            raise _CannotRun(f"experiments are turned off for registry '{experiment.registry_id}'")

    async def _templates(self, experiment: Any) -> tuple[str | None, str]:
        async with self._db.read() as conn:
            rows = {
                r.version_id: r.template
                for r in await conn.execute(
                    select(prompt_versions.c.version_id, prompt_versions.c.template).where(
                        prompt_versions.c.user_id == experiment.user_id,
                        prompt_versions.c.version_id.in_(
                            [experiment.baseline_version_id, experiment.candidate_version_id]
                        ),
                    )
                )
            }
        candidate = rows.get(experiment.candidate_version_id)
        if candidate is None:
            raise _CannotRun(
                f"the candidate '{experiment.candidate_version_id}' has no system prompt to replay "
                "(seen only in completions, or deleted)"
            )
        return rows.get(experiment.baseline_version_id), candidate

    async def _choose_samples(self, experiment: Any) -> None:
        """At the first claim: copy the baseline's newest sampled runs into replay rows."""
        async with self._db.write() as conn:
            await self._renew(conn, experiment.id)
            chosen = await conn.scalar(
                select(prompt_replays.c.position)
                .where(prompt_replays.c.experiment_id == experiment.id)
                .limit(1)
            )
            if chosen is not None:
                return  # resumed: the samples were chosen by an earlier claim
            samples = (
                await conn.execute(
                    select(prompt_samples)
                    .where(
                        prompt_samples.c.user_id == experiment.user_id,
                        prompt_samples.c.version_id == experiment.baseline_version_id,
                    )
                    .order_by(prompt_samples.c.id.desc())
                    .limit(experiment.sample_size)
                )
            ).all()
            if not samples:
                raise _CannotRun(
                    f"no recorded chat runs of the baseline '{experiment.baseline_version_id}' to replay"
                )
            await conn.execute(
                insert(prompt_replays),
                [_replay_row(experiment.id, position, s) for position, s in enumerate(reversed(samples))],
            )

    async def _owner(self, experiment: Any) -> Principal:
        """Who pays: the key that created the candidate (or started the experiment), else the
        registry owner's newest active key."""
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    select(api_keys, users.c.currency)
                    .join(users, users.c.id == api_keys.c.user_id)
                    .where(api_keys.c.user_id == experiment.user_id, api_keys.c.is_active.is_(True))
                    .order_by(api_keys.c.created_at.desc())
                )
            ).all()
        if not rows:
            raise _CannotRun("the registry's owner has no active API key to bill the replays to")
        return principal_of(next((r for r in rows if r.id == experiment.key_id), rows[0]))

    async def _replay_one(
        self, experiment: Any, principal: Principal, replay: Any, templates: tuple[str | None, str]
    ) -> None:
        messages: list[dict[str, Any]] = orjson.loads(replay.messages)
        values: dict[str, Any]
        try:
            candidate_messages = with_template(messages, *templates)
            baseline = (
                Replayed(replay.baseline_output, replay.baseline_latency_ms, replay.baseline_cost_units)
                if replay.baseline_recorded
                else await self._call(experiment, principal, replay, messages, experiment.baseline_version_id)
            )
            candidate = await self._call(
                experiment, principal, replay, candidate_messages, experiment.candidate_version_id
            )
            ctx = _context(principal, experiment, replay.position, "judge", experiment.candidate_version_id)
            verdict = await self._judges[experiment.judge].score(ctx, baseline.output, candidate.output)
            values = {
                "status": "done",
                "baseline_output": baseline.output,
                "baseline_latency_ms": baseline.latency_ms,
                "baseline_cost_units": baseline.cost_units,
                "candidate_output": candidate.output,
                "candidate_latency_ms": candidate.latency_ms,
                "candidate_cost_units": candidate.cost_units,
                "similarity": verdict.similarity,
                "passed": verdict.passed,
            }
        except (TemplateMismatch, InvalidRequest) as exc:
            # This sample cannot be replayed with the candidate: it counts as a failure.
            message = exc.message if isinstance(exc, BatchInError) else str(exc)
            values = {"status": "error", "similarity": 0.0, "passed": False, "error": message}
        except BatchInError as exc:
            raise _CannotRun(f"{exc.code}: {exc.message}") from None
        async with self._db.write() as conn:
            await self._renew(conn, experiment.id)
            await conn.execute(
                update(prompt_replays)
                .where(
                    prompt_replays.c.experiment_id == experiment.id,
                    prompt_replays.c.position == replay.position,
                )
                .values(**values)
            )

    async def _call(
        self,
        experiment: Any,
        principal: Principal,
        replay: Any,
        messages: list[dict[str, Any]],
        version_id: str,
    ) -> Replayed:
        side = "candidate" if version_id == experiment.candidate_version_id else "baseline"
        for _ in range(_MAX_RATE_LIMIT_WAITS):
            ctx = _context(principal, experiment, replay.position, side, version_id)
            try:
                return await self._replayer.replay(
                    ctx, model_id=replay.model_id, messages=messages, max_tokens=replay.max_tokens
                )
            except RateLimited as exc:
                await asyncio.sleep(min(exc.retry_after or 1.0, 30.0))
        raise _CannotRun(f"the model '{replay.model_id}' stayed at capacity; try the experiment again later")

    # -- concluding ------------------------------------------------------------------------------

    async def _conclude(self, experiment: Any, *, error: str | None = None) -> None:
        """Written only while our claim holds (else another process has taken over)."""
        async with self._db.write() as conn:
            await self._renew(conn, experiment.id)
            if error is not None:
                await fail(conn, experiment, error)
            else:
                await conclude(conn, self._signer, self._settings, experiment)


def _context(principal: Principal, experiment: Any, position: int, side: str, version_id: str) -> CallContext:
    return CallContext(
        principal=principal,
        request_id=f"req_{experiment.id}_{position}_{side}_{secrets.token_hex(4)}",
        prompt_version=version_id,
    )


def _replay_row(experiment_id: str, position: int, sample: Any) -> dict[str, Any]:
    # A greedy recorded run is what a replay would produce: reuse it instead of paying again.
    recorded = sample.temperature == 0
    return {
        "experiment_id": experiment_id,
        "position": position,
        "model_id": sample.model_id,
        "messages": sample.messages,
        "max_tokens": sample.max_tokens,
        "status": "pending",
        "baseline_recorded": recorded,
        "baseline_output": sample.output_text if recorded else None,
        "baseline_latency_ms": sample.latency_ms if recorded else None,
        "baseline_cost_units": sample.cost_units if recorded else None,
    }
