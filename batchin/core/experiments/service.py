"""Prompt experiments: a candidate version replayed against a baseline's recorded runs, judged,
and promoted when it is at least as good (rules in prompt_promotion.py).

Experiments run only in registries whose owner opted in (`experiments_enabled`). They start on
their own when a new version of a registry with a promoted baseline appears (core/prompts/registry.py),
or explicitly (`start`). They run in the background worker
(experiment_worker.py) that `app.background_work` starts; `run_pending` runs what is due now.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from batchin.config import Settings
from batchin.core.billing.money import units_to_cents
from batchin.core.clock import isoformat, utcnow
from batchin.core.context import CallContext
from batchin.core.experiments.worker import ExperimentWorker
from batchin.core.media.embeddings import EmbeddingsService
from batchin.core.prompts.labels import DocumentSigner
from batchin.core.prompts.registry import queue_experiment
from batchin.core.prompts.service import PromptService
from batchin.core.serving.inference import InferenceService
from batchin.errors import InvalidRequest, NotFound
from batchin.protocol.prompts import (
    ExperimentCreateRequest,
    ExperimentDetail,
    ExperimentItem,
    ExperimentList,
    ExperimentSample,
    PromptRegressionItem,
    PromptRegressionList,
)
from batchin.store.database import Database
from batchin.store.tables import (
    prompt_experiments,
    prompt_registries,
    prompt_regressions,
    prompt_replays,
    prompt_versions,
)

__all__ = ["MAX_LIST", "ExperimentService"]

MAX_LIST = 100


class ExperimentService:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        prompts: PromptService,
        inference: InferenceService,
        embeddings: EmbeddingsService,
        signer: DocumentSigner,
    ) -> None:
        self._settings = settings
        self._db = database
        self._prompts = prompts
        self.worker = ExperimentWorker(settings, database, inference, embeddings, signer)
        prompts.recorder.on_new_experiments = self.worker.wake

    async def start_worker(self) -> None:
        await self.worker.start()

    async def stop_worker(self) -> None:
        await self.worker.stop()

    async def run_pending(self) -> int:
        """Flush recorded runs (which may queue experiments), then run every due experiment."""
        await self._prompts.recorder.flush()
        return await self.worker.run_pending()

    async def start(self, ctx: CallContext, request: ExperimentCreateRequest) -> ExperimentDetail:
        user_id, registry_id = ctx.principal.user_id, request.registry_id
        await self._prompts.recorder.flush()
        async with self._db.write() as conn:
            registry = (
                await conn.execute(
                    select(
                        prompt_registries.c.promoted_version_id, prompt_registries.c.experiments_enabled
                    ).where(
                        prompt_registries.c.user_id == user_id, prompt_registries.c.registry_id == registry_id
                    )
                )
            ).first()
            found = {
                r.version_id: r.status
                for r in await conn.execute(
                    select(prompt_versions.c.version_id, prompt_versions.c.status).where(
                        prompt_versions.c.user_id == user_id, prompt_versions.c.registry_id == registry_id
                    )
                )
            }
            if registry is None or not found:
                raise NotFound(f"Prompt registry '{registry_id}' not found.")
            if not registry.experiments_enabled:
                raise InvalidRequest(
                    f"Experiments are off for registry '{registry_id}': turn them on with "
                    f'PATCH /v1/prompts/{registry_id} {{"experiments_enabled": true}} '
                    "(MCP: update_prompt_registry); only then are its runs sampled for replay.",
                    param="registry_id",
                )
            candidate = request.candidate_version_id
            baseline = request.baseline_version_id or registry.promoted_version_id
            for name, version in (("candidate_version_id", candidate), ("baseline_version_id", baseline)):
                if version not in found:
                    raise InvalidRequest(
                        f"'{version}' is not a version of registry '{registry_id}'.", param=name
                    )
            if candidate == baseline or found[candidate] == "promoted":
                raise InvalidRequest(
                    f"'{candidate}' is the promoted baseline already; name another candidate.",
                    param="candidate_version_id",
                )
            experiment_id = await queue_experiment(
                conn,
                user_id=user_id,
                key_id=ctx.principal.key_id,
                registry_id=registry_id,
                baseline_version_id=str(baseline),
                candidate_version_id=candidate,
                judge=request.judge or self._settings.prompt_experiment_judge,
                sample_size=request.sample_size or self._settings.prompt_experiment_samples,
                trigger="manual",
                now=utcnow(),
            )
        self.worker.wake()
        return await self.get(user_id, experiment_id)

    async def list_experiments(self, user_id: str, *, limit: int = MAX_LIST) -> ExperimentList:
        _check_limit(limit)
        await self._prompts.recorder.flush()
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    _with_regression_id()
                    .where(prompt_experiments.c.user_id == user_id)
                    .order_by(prompt_experiments.c.created_at.desc(), prompt_experiments.c.id.desc())
                    .limit(limit)
                )
            ).all()
        return ExperimentList(items=[_experiment(r) for r in rows])

    async def get(self, user_id: str, experiment_id: str) -> ExperimentDetail:
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    _with_regression_id().where(
                        prompt_experiments.c.user_id == user_id, prompt_experiments.c.id == experiment_id
                    )
                )
            ).first()
            if row is None:
                raise NotFound(f"Experiment '{experiment_id}' not found.")
            replays = (
                await conn.execute(
                    select(prompt_replays)
                    .where(prompt_replays.c.experiment_id == experiment_id)
                    .order_by(prompt_replays.c.position)
                )
            ).all()
            regression = (
                await conn.execute(
                    select(prompt_regressions).where(prompt_regressions.c.experiment_id == experiment_id)
                )
            ).first()
        return ExperimentDetail(
            **_experiment(row).model_dump(),
            samples=[_sample(r) for r in replays],
            regression=_regression(regression) if regression is not None else None,
        )

    async def list_regressions(self, user_id: str, *, limit: int = MAX_LIST) -> PromptRegressionList:
        _check_limit(limit)
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    select(prompt_regressions)
                    .where(prompt_regressions.c.user_id == user_id)
                    .order_by(prompt_regressions.c.created_at.desc(), prompt_regressions.c.id.desc())
                    .limit(limit)
                )
            ).all()
        return PromptRegressionList(items=[_regression(r) for r in rows])


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIST:
        raise InvalidRequest(f"limit must be between 1 and {MAX_LIST}.", param="limit")


def _with_regression_id() -> Any:
    return select(prompt_experiments, prompt_regressions.c.id.label("regression_id")).outerjoin(
        prompt_regressions, prompt_regressions.c.experiment_id == prompt_experiments.c.id
    )


def _cents(units: int | None) -> int | float | None:
    return None if units is None else units_to_cents(units)


def _experiment(r: Any) -> ExperimentItem:
    return ExperimentItem(
        experiment_id=r.id,
        registry_id=r.registry_id,
        baseline_prompt_version_id=r.baseline_version_id,
        candidate_prompt_version_id=r.candidate_version_id,
        status=r.status,
        promotion_status=r.promotion_status,
        sample_count=r.sample_count,
        pass_rate=r.pass_rate,
        judge=r.judge,
        trigger=r.trigger,
        reason=r.reason,
        regression_id=r.regression_id,
        created_at=isoformat(r.created_at) or "",
        finished_at=isoformat(r.finished_at),
    )


def _sample(r: Any) -> ExperimentSample:
    return ExperimentSample(
        position=r.position,
        model_id=r.model_id,
        status=r.status,
        baseline_recorded=r.baseline_recorded,
        baseline_output=r.baseline_output,
        candidate_output=r.candidate_output,
        similarity=r.similarity,
        passed=r.passed,
        baseline_latency_ms=r.baseline_latency_ms,
        candidate_latency_ms=r.candidate_latency_ms,
        baseline_cost_cents=_cents(r.baseline_cost_units),
        candidate_cost_cents=_cents(r.candidate_cost_units),
        error=r.error,
    )


def _regression(r: Any) -> PromptRegressionItem:
    return PromptRegressionItem(
        regression_id=r.id,
        experiment_id=r.experiment_id,
        registry_id=r.registry_id,
        baseline_prompt_version_id=r.baseline_version_id,
        candidate_prompt_version_id=r.candidate_version_id,
        status=r.status,
        judge=r.judge,
        sample_count=r.sample_count,
        pass_count=r.pass_count,
        fail_count=r.fail_count,
        avg_similarity=r.avg_similarity,
        baseline_avg_latency_ms=r.baseline_avg_latency_ms,
        candidate_avg_latency_ms=r.candidate_avg_latency_ms,
        baseline_avg_cost_cents=units_to_cents(r.baseline_avg_cost_units),
        candidate_avg_cost_cents=units_to_cents(r.candidate_avg_cost_units),
        created_at=isoformat(r.created_at) or "",
    )
