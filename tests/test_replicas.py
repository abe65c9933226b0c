"""Two `batchin serve` replicas on one PostgreSQL and one Redis act as one: a key's RPM limit is one
budget across them, a monthly budget is never overspent by concurrent calls spread over both, a
batch's tasks are run and billed exactly once although one replica is killed mid-run, and the
batch's webhook is delivered once. Correctness only; bench/bench_replicas.py measures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.bench_replicas import batch_with_a_replica_killed, budget_holds, rpm_accuracy, webhooks_once
from bench.harness import fake_upstream
from bench.replica_cluster import Cluster, WebhookCounter, cluster
from tests.conftest import POSTGRES_URL, REDIS_URL

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    # Two replicas, a fake upstream and a batch: minutes on a loaded 2-core machine, not seconds.
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        not (POSTGRES_URL and REDIS_URL), reason="needs PostgreSQL and Redis (scripts/test-services.sh)"
    ),
]


@pytest.fixture(scope="module")
def replicas() -> Iterator[Cluster]:
    assert POSTGRES_URL is not None
    assert REDIS_URL is not None
    with (
        fake_upstream(core=-1, tokens=20, delay_ms=5) as upstream_url,
        cluster(upstream_url, POSTGRES_URL, REDIS_URL, {"BATCHIN_STALE_RESERVATION_SECONDS": "6"}) as running,
    ):
        running.start_replica()
        running.start_replica()
        yield running


def test_one_rpm_limit_across_replicas(replicas: Cluster) -> None:
    figures = rpm_accuracy(replicas, limit=120)
    assert figures["within_bounds"], figures


def test_a_monthly_budget_is_never_overspent_across_replicas(replicas: Cluster) -> None:
    figures = budget_holds(replicas, budget_cents=10, calls=30)
    assert not figures["overspent"], figures
    assert figures["calls_ok"] > 0, figures
    assert figures["calls_refused"] > 0, figures  # the budget, not the call count, ended it
    assert figures["spent_units"] == figures["logged_cost_units"], figures
    assert figures["usage_logs"] == figures["calls_ok"], figures


def test_batch_tasks_run_once_with_a_replica_killed_and_its_webhook_is_sent_once(replicas: Cluster) -> None:
    hooks = WebhookCounter()
    try:
        figures = batch_with_a_replica_killed(replicas, hooks, tasks=300)
        webhooks = webhooks_once(hooks, figures["batch_id"])
    finally:
        hooks.close()
    assert figures["status"] == "completed", figures
    assert figures["killed_replica_after_tasks"] is not None, figures
    assert figures["results_exactly_once"], figures
    assert figures["usage_logs"] == 300 - figures["failed"], figures  # billed: each task that ran, once
    assert figures["reservations_left_held"] == 0, figures
    assert webhooks["events_for_batch"] == 1, webhooks
    assert webhooks["each_delivered_once"], webhooks
