"""The end of an experiment, in its worker's transaction: the regression report over its samples,
the promotion decision (prompt_promotion.py) and, when the candidate wins, the signed label move.

The label moves only if the experiment's baseline still holds it: a person who promoted another
version meanwhile decided differently, and an experiment never overrides that.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from batchin.config import Settings
from batchin.core.clock import utcnow
from batchin.core.prompts.labels import DocumentSigner, move_label
from batchin.core.prompts.promotion import SampleOutcome, decide, regression_passed, summarise
from batchin.store.tables import prompt_experiments, prompt_registries, prompt_regressions, prompt_replays

__all__ = ["conclude", "fail"]


async def fail(conn: AsyncConnection, experiment: Any, reason: str) -> None:
    """The experiment could not be judged at all: no regression, the candidate is not promoted."""
    await _finish(conn, experiment.id, status="error", promotion_status="rejected", reason=reason)


async def conclude(
    conn: AsyncConnection, signer: DocumentSigner, settings: Settings, experiment: Any
) -> None:
    rows = (
        await conn.execute(select(prompt_replays).where(prompt_replays.c.experiment_id == experiment.id))
    ).all()
    report = summarise([_outcome(r) for r in rows])
    status = "passed" if regression_passed(report, settings) else "failed"
    promote, reason = decide(report, settings)
    await conn.execute(
        insert(prompt_regressions).values(
            id=f"preg_{secrets.token_hex(12)}",
            experiment_id=experiment.id,
            user_id=experiment.user_id,
            registry_id=experiment.registry_id,
            baseline_version_id=experiment.baseline_version_id,
            candidate_version_id=experiment.candidate_version_id,
            status=status,
            judge=experiment.judge,
            sample_count=report.sample_count,
            pass_count=report.pass_count,
            fail_count=report.fail_count,
            avg_similarity=report.avg_similarity,
            baseline_avg_latency_ms=report.baseline_avg_latency_ms,
            candidate_avg_latency_ms=report.candidate_avg_latency_ms,
            baseline_avg_cost_units=report.baseline_avg_cost_units,
            candidate_avg_cost_units=report.candidate_avg_cost_units,
            created_at=utcnow(),
        )
    )
    if promote:
        promote, reason = await _promote(conn, signer, experiment, reason)
    await _finish(
        conn,
        experiment.id,
        status=status,
        promotion_status="promoted" if promote else "rejected",
        reason=reason,
        sample_count=report.sample_count,
        pass_rate=report.pass_rate,
    )


async def _promote(
    conn: AsyncConnection, signer: DocumentSigner, experiment: Any, reason: str
) -> tuple[bool, str]:
    current = await conn.scalar(
        select(prompt_registries.c.promoted_version_id)
        .where(
            prompt_registries.c.user_id == experiment.user_id,
            prompt_registries.c.registry_id == experiment.registry_id,
        )
        .with_for_update()
    )
    if current != experiment.baseline_version_id:
        return False, (
            f"the baseline changed while the experiment ran ('{current}' is promoted now, not "
            f"'{experiment.baseline_version_id}'); start a new experiment"
        )
    await move_label(
        conn,
        signer,
        user_id=experiment.user_id,
        registry_id=experiment.registry_id,
        to_version_id=experiment.candidate_version_id,
        action="promote",
        actor=f"experiment:{experiment.id}",
        reason=reason,
        now=utcnow(),
    )
    return True, reason


async def _finish(conn: AsyncConnection, experiment_id: str, **values: Any) -> None:
    await conn.execute(
        update(prompt_experiments)
        .where(prompt_experiments.c.id == experiment_id)
        .values(claimed_by=None, lease_until=None, finished_at=utcnow(), **values)
    )


def _outcome(row: Any) -> SampleOutcome:
    return SampleOutcome(
        passed=bool(row.passed),
        similarity=float(row.similarity or 0.0),
        baseline_latency_ms=row.baseline_latency_ms,
        candidate_latency_ms=row.candidate_latency_ms,
        baseline_cost_units=row.baseline_cost_units,
        candidate_cost_units=row.candidate_cost_units,
    )
