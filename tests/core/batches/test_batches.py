"""Inline batches through the core: every task runs once through the ordinary inference path,
billed once at the batch price; failures are retried or recorded; bad input is refused whole."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from fractions import Fraction

import orjson
import pytest

from batchin.config import Settings
from batchin.core.batches.calls import classify
from batchin.core.billing.metering import scale_cost
from batchin.errors import InvalidRequest, NotFound, RateLimited, ServiceUnavailable
from batchin.protocol.accounts import KeyCreateRequest, UserCreated
from batchin.services import Services
from tests.batch_fixtures import (
    CHAT,
    DISCOUNTED,
    FAULTY,
    TASK_COST,
    TEXT,
    WIDE,
    batch_services,
    chat_task,
    submit,
    task_rows,
    usage_of,
    wait_for,
)
from tests.conftest import MakeUser
from tests.text_fixtures import balance_units, cost_units, eventually, runner_of


async def test_inline_batch_runs_every_task_once_billed_at_the_batch_price(
    services: Services, user: UserCreated
) -> None:
    before = await balance_units(services, user)
    submitted = await submit(services, user, [chat_task(f"task-{i}") for i in range(6)], priority="high")
    assert (submitted.status, submitted.priority, submitted.total_tasks) == ("pending", "high", 6)

    batch = await wait_for(services, user, submitted.id)

    assert batch.status == "completed"
    assert (batch.completed_tasks, batch.failed_tasks) == (6, 0)
    assert batch.request_counts.model_dump() == {"total": 6, "completed": 6, "failed": 0}
    assert batch.in_progress_at is not None
    assert batch.completed_at is not None
    assert batch.tasks is not None
    assert [t.custom_id for t in batch.tasks] == [f"task-{i}" for i in range(6)]
    assert {t.status for t in batch.tasks} == {"completed"}
    assert all(t.result and t.result["choices"][0]["message"]["content"] == TEXT for t in batch.tasks)
    logs = await usage_of(services, user)
    assert len(logs) == 6
    assert len({log.request_id for log in logs}) == 6
    assert {(log.status, log.cost_units) for log in logs} == {("succeeded", TASK_COST)}
    assert (
        before - await balance_units(services, user) == sum(log.cost_units for log in logs) == 6 * TASK_COST
    )
    assert len((await runner_of(services, CHAT)).calls) == 6


async def test_models_may_differ_within_one_batch(services: Services, user: UserCreated) -> None:
    batch = await submit(services, user, [chat_task("a", CHAT), chat_task("b", WIDE)])

    done = await wait_for(services, user, batch.id)

    assert done.tasks is not None
    assert [(t.custom_id, t.model, t.status) for t in done.tasks] == [
        ("a", CHAT, "completed"),
        ("b", WIDE, "completed"),
    ]
    assert sorted(log.model for log in await usage_of(services, user)) == [CHAT, WIDE]


async def test_a_catalog_batch_discount_overrides_the_servers_ratio(
    services: Services, user: UserCreated
) -> None:
    batch = await submit(services, user, [chat_task("x", DISCOUNTED)])

    await wait_for(services, user, batch.id)

    [log] = await usage_of(services, user)
    assert log.cost_units == scale_cost(cost_units(2, 4), Fraction(4, 5))


async def test_the_servers_ratio_prices_models_without_their_own(settings: Settings) -> None:
    async with batch_services(settings, batch_price_ratio=Decimal("0.25")) as services:
        user = await services.accounts.create_user("ratio@example.com", "R", 100)
        batch = await submit(services, user, [chat_task("x")])
        await wait_for(services, user, batch.id)
        [log] = await usage_of(services, user)
    assert log.cost_units == scale_cost(cost_units(2, 4), Fraction(1, 4))


async def test_a_task_refused_by_the_model_fails_alone_and_the_batch_completes(
    services: Services, user: UserCreated
) -> None:
    tasks = [chat_task("ok"), chat_task("too-long", max_tokens=1000), chat_task("ok-2")]
    batch = await submit(services, user, tasks)

    done = await wait_for(services, user, batch.id)

    assert (done.status, done.completed_tasks, done.failed_tasks) == ("completed", 2, 1)
    assert done.tasks is not None
    refused = done.tasks[1]
    assert (refused.status, refused.status_code) == ("failed", 400)
    assert refused.error is not None
    assert refused.error.code == "invalid_request"
    assert [log.status for log in await usage_of(services, user)] == ["succeeded", "succeeded"]
    rows = await task_rows(services, batch.id)
    assert rows[1].attempts == 1  # a refusal is not retried


async def test_a_transient_engine_failure_is_retried_then_succeeds(
    services: Services, user: UserCreated
) -> None:
    runner = await runner_of(services, CHAT)
    runner.fail_after = 0  # the engine breaks before its first token...
    batch = await submit(services, user, [chat_task("flaky")])
    await eventually(lambda: bool(runner.calls) and runner.calls[0].outcome == "failed")
    runner.fail_after = None  # ...and recovers

    done = await wait_for(services, user, batch.id)

    assert done.tasks is not None
    assert done.tasks[0].status == "completed"
    logs = sorted(await usage_of(services, user), key=lambda log: log.created_at)
    assert [(log.status, log.cost_units) for log in logs][-1] == ("succeeded", TASK_COST)
    assert {log.status for log in logs[:-1]} <= {"failed"}
    assert sum(log.cost_units for log in logs) == TASK_COST
    [row] = await task_rows(services, batch.id)
    assert row.failures == len(logs) - 1 >= 1


async def test_a_task_failing_every_time_fails_after_its_retries(settings: Settings) -> None:
    async with batch_services(settings, batch_max_retries=2) as services:
        user = await services.accounts.create_user("faulty@example.com", "F", 100)
        before = await balance_units(services, user)
        batch = await submit(services, user, [chat_task("doomed", FAULTY), chat_task("fine")])

        done = await wait_for(services, user, batch.id)

        assert (done.status, done.completed_tasks, done.failed_tasks) == ("completed", 1, 1)
        assert done.tasks is not None
        doomed = done.tasks[0]
        assert (doomed.status, doomed.status_code) == ("failed", 500)
        assert doomed.error is not None
        assert doomed.error.code == "engine_error"
        assert len((await runner_of(services, FAULTY)).calls) == 3  # the first try and two retries
        logs = await usage_of(services, user)
        assert sorted(log.status for log in logs) == ["failed", "failed", "failed", "succeeded"]
        assert before - await balance_units(services, user) == TASK_COST


async def test_tasks_of_a_revoked_key_fail_unauthorized(services: Services, make_user: MakeUser) -> None:
    owner = await make_user(credit_cents=100)
    extra = await services.accounts.create_key(owner.id, KeyCreateRequest(name="batch key"))
    extra_user = owner.model_copy(update={"api_key": extra.key})
    await services.batches.dispatcher.stop()  # nothing runs until the key is gone
    batch = await submit(services, extra_user, [chat_task("late")])
    await services.accounts.revoke_key(owner.id, extra.id)
    await services.batches.dispatcher.start()

    done = await wait_for(services, owner, batch.id)

    assert done.tasks is not None
    assert (done.tasks[0].status, done.tasks[0].status_code) == ("failed", 401)
    assert await usage_of(services, owner) == []


# --- refusals at submission ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "param"),
    [
        (chat_task("x", model="no-such-model"), "tasks[1].model"),
        (
            {"custom_id": "x", "request_body": {"messages": [{"role": "user", "content": "hi"}]}},
            "tasks[1].request_body.model",
        ),
        (chat_task("x", stream=True), "tasks[1].request_body.stream"),
        ({"custom_id": "x", "model": CHAT, "request_body": {}}, "tasks[1].request_body.messages"),
        (chat_task("first"), "tasks[1].custom_id"),
    ],
    ids=["unknown-model", "no-model", "streaming", "no-messages", "duplicate-custom-id"],
)
async def test_an_invalid_task_refuses_the_whole_batch(
    services: Services, user: UserCreated, task: dict[str, object], param: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await submit(services, user, [chat_task("first"), task])  # type: ignore[list-item]

    assert refused.value.param == param
    assert await services.batches.list(user.id) == []


async def test_a_tasks_model_must_serve_the_batchs_endpoint(services: Services, user: UserCreated) -> None:
    with pytest.raises(InvalidRequest, match="does not serve /v1/completions"):
        await submit(services, user, [chat_task("x", WIDE)], endpoint="/v1/completions")


async def test_another_users_batch_is_not_found(
    services: Services, user: UserCreated, make_user: MakeUser
) -> None:
    batch = await submit(services, user, [chat_task("mine")])
    stranger = await make_user()

    with pytest.raises(NotFound):
        await services.batches.get(stranger.id, batch.id)
    with pytest.raises(NotFound):
        await services.batches.cancel(stranger.id, batch.id)


# --- what a failed attempt means -----------------------------------------------------------------


def test_a_rate_limit_is_waited_out_without_using_a_retry() -> None:
    verdict = classify(RateLimited("busy", retry_after=3.0), failures=5, max_retries=5, base_delay=1.0)
    assert (verdict.final, verdict.counts, verdict.delay, verdict.status_code) == (False, False, 3.0, 429)


def test_an_unavailable_engine_is_retried_with_exponential_backoff() -> None:
    delays = [
        classify(ServiceUnavailable("down"), failures=n, max_retries=5, base_delay=0.5).delay
        for n in range(3)
    ]
    assert delays == [0.5, 1.0, 2.0]


def test_the_last_retry_fails_the_task_with_the_engines_error() -> None:
    verdict = classify(ServiceUnavailable("down"), failures=5, max_retries=5, base_delay=0.5)
    assert verdict.final
    assert orjson.loads(verdict.body)["error"]["code"] == "service_unavailable"


def test_an_invalid_request_is_final_at_once() -> None:
    verdict = classify(InvalidRequest("bad", param="messages"), failures=0, max_retries=5, base_delay=0.5)
    assert (verdict.final, verdict.status_code, verdict.code) == (True, 400, "invalid_request")


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
async def test_stop_ends_the_supervisor_even_as_a_wake_arrives(settings: Settings, turns: int) -> None:
    """Python 3.11's wait_for drops a cancel that lands as the awaited event fires; the
    supervisor's loop must end anyway instead of polling on (a teardown hung in CI)."""
    async with batch_services(settings) as services:
        supervisor = services.batches.supervisor
        await asyncio.sleep(0.05)  # the loop is in its wait
        supervisor.wake()
        for _ in range(turns):
            await asyncio.sleep(0)
        await asyncio.wait_for(supervisor.stop(), 5)
