"""The regression report over an experiment's samples, and the promotion rule.

A candidate is promoted only when all of these hold, else it stays a candidate with the reason:
- its pass rate reaches `prompt_promotion_min_pass_rate` (the regression `passed`);
- its average latency is at most the baseline's * (1 + `prompt_promotion_max_latency_increase`),
  with differences under `LATENCY_NOISE_MS` taken as equal (timer and scheduling noise);
- its average cost is at most the baseline's * (1 + `prompt_promotion_max_cost_increase`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from batchin.config import Settings

__all__ = ["LATENCY_NOISE_MS", "Regression", "SampleOutcome", "decide", "regression_passed", "summarise"]

LATENCY_NOISE_MS = 10


@dataclass(frozen=True, slots=True)
class SampleOutcome:
    passed: bool
    similarity: float
    baseline_latency_ms: int | None
    candidate_latency_ms: int | None
    baseline_cost_units: int | None
    candidate_cost_units: int | None


@dataclass(frozen=True, slots=True)
class Regression:
    sample_count: int
    pass_count: int
    fail_count: int
    pass_rate: float
    avg_similarity: float
    baseline_avg_latency_ms: int
    candidate_avg_latency_ms: int
    baseline_avg_cost_units: int
    candidate_avg_cost_units: int


def _mean(values: Sequence[int | None]) -> int:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known)) if known else 0


def summarise(samples: Sequence[SampleOutcome]) -> Regression:
    """Latency and cost averages cover the samples where both sides ran (a failed replay has none)."""
    count = len(samples)
    passed = sum(1 for s in samples if s.passed)
    both = [s for s in samples if s.baseline_latency_ms is not None and s.candidate_latency_ms is not None]
    return Regression(
        sample_count=count,
        pass_count=passed,
        fail_count=count - passed,
        pass_rate=round(passed / count, 4) if count else 0.0,
        avg_similarity=round(sum(s.similarity for s in samples) / count, 4) if count else 0.0,
        baseline_avg_latency_ms=_mean([s.baseline_latency_ms for s in both]),
        candidate_avg_latency_ms=_mean([s.candidate_latency_ms for s in both]),
        baseline_avg_cost_units=_mean([s.baseline_cost_units for s in both]),
        candidate_avg_cost_units=_mean([s.candidate_cost_units for s in both]),
    )


def regression_passed(report: Regression, settings: Settings) -> bool:
    return report.sample_count > 0 and report.pass_rate >= settings.prompt_promotion_min_pass_rate


def _increase(baseline: int, candidate: int) -> float:
    if baseline <= 0:
        return 0.0 if candidate <= 0 else float("inf")
    return (candidate - baseline) / baseline


def decide(report: Regression, settings: Settings) -> tuple[bool, str]:
    """(promote?, why) for a finished regression."""
    if not regression_passed(report, settings):
        return False, (
            f"pass rate {report.pass_rate:.0%} ({report.pass_count}/{report.sample_count}) is below "
            f"the required {settings.prompt_promotion_min_pass_rate:.0%}"
        )
    base_ms, cand_ms = report.baseline_avg_latency_ms, report.candidate_avg_latency_ms
    latency_bound = settings.prompt_promotion_max_latency_increase
    if cand_ms - base_ms > LATENCY_NOISE_MS and _increase(base_ms, cand_ms) > latency_bound:
        return False, (
            f"average latency {cand_ms} ms vs the baseline's {base_ms} ms exceeds the allowed "
            f"increase of {latency_bound:.0%}"
        )
    base_cost, cand_cost = report.baseline_avg_cost_units, report.candidate_avg_cost_units
    cost_bound = settings.prompt_promotion_max_cost_increase
    if _increase(base_cost, cand_cost) > cost_bound:
        return False, (
            f"average cost {cand_cost} vs the baseline's {base_cost} micro-cents exceeds the allowed "
            f"increase of {cost_bound:.0%}"
        )
    return True, (
        f"pass rate {report.pass_rate:.0%} ({report.pass_count}/{report.sample_count}); latency "
        f"{cand_ms} ms vs {base_ms} ms; cost {cand_cost} vs {base_cost} micro-cents: within bounds"
    )
