"""Experiments on scripted runners: sampled replay, regression, the promotion decision, billing,
priority, resumption and the background worker. `scripted-chat` answers the same whatever the
prompt (an equivalent candidate); `echo-chat` answers with its system prompt (a changed one)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import update

from batchin.app import background_work
from batchin.config import Settings
from batchin.core.experiments.worker import ExperimentWorker
from batchin.core.prompts.attribution import attribute
from batchin.core.prompts.labels import verify_move
from batchin.core.serving.admission import Priority
from batchin.errors import InvalidRequest, NotFound
from batchin.protocol.accounts import UserCreated
from batchin.protocol.prompts import (
    ExperimentCreateRequest,
    ExperimentDetail,
    PromptLabelMoveRequest,
    PromptVersionCreateRequest,
)
from batchin.services import Services
from batchin.store.tables import prompt_experiments
from tests.prompt_fixtures import GENEROUS_BOUNDS, chat, context_for, opt_in, prompt_services

BASE = "You are a support agent."


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with prompt_services(settings, **GENEROUS_BOUNDS) as built:
        yield built


async def new_user(services: Services) -> UserCreated:
    return await services.accounts.create_user(f"{uuid.uuid4().hex[:12]}@example.com", "Prompt User", 10_000)


async def traffic(
    services: Services, user: UserCreated, *, model: str, versions: list[tuple[str, str]]
) -> None:
    """Three runs of the first (header, system prompt) — the baseline — then one of each other, in
    a registry opted in to experiments first."""
    (first_header, first_system), *rest = versions
    await opt_in(services, user, attribute(first_header, None, first_system).registry_id)
    for question in ("What are your hours?", "Where are you?", "Can I return this?"):
        await chat(services, user, first_system, question, model=model, header=first_header)
    for header, system in rest:
        await chat(services, user, system, "Hello?", model=model, header=header)


async def only_experiment(services: Services, user: UserCreated) -> ExperimentDetail:
    [item] = (await services.experiments.list_experiments(user.id)).items
    return await services.experiments.get(user.id, item.experiment_id)


async def test_an_equivalent_candidate_is_promoted(services: Services) -> None:
    user = await new_user(services)
    await traffic(
        services, user, model="scripted-chat", versions=[("support@v1", BASE), ("support@v2", BASE)]
    )
    assert await services.experiments.run_pending() == 1
    experiment = await only_experiment(services, user)
    assert experiment.model_dump(include={"status", "promotion_status", "sample_count", "pass_rate"}) == {
        "status": "passed",
        "promotion_status": "promoted",
        "sample_count": 3,
        "pass_rate": 1.0,
    }
    assert experiment.reason is not None
    assert experiment.reason.startswith("pass rate 100% (3/3)")
    assert [(s.passed, s.similarity, s.baseline_output, s.candidate_output) for s in experiment.samples] == [
        (True, 1.0, "Hello, world!", "Hello, world!")
    ] * 3
    regression = experiment.regression
    assert regression is not None
    assert regression.model_dump(
        include={
            "regression_id",
            "status",
            "judge",
            "sample_count",
            "pass_count",
            "fail_count",
            "avg_similarity",
        }
    ) == {
        "regression_id": experiment.regression_id,
        "status": "passed",
        "judge": "deterministic_replay",
        "sample_count": 3,
        "pass_count": 3,
        "fail_count": 0,
        "avg_similarity": 1.0,
    }
    listing = await services.prompts.list_prompts(user.id)
    [item] = listing.items
    assert item.promoted_version_id == "support@v2"
    assert [(v.version_id, v.status) for v in item.versions] == [
        ("support@v1", "observed"),
        ("support@v2", "promoted"),
    ]
    [latest, *_] = (await services.prompts.label_history(user.id, "support")).items
    assert latest.actor == f"experiment:{experiment.experiment_id}"
    assert (latest.from_version_id, latest.to_version_id) == ("support@v1", "support@v2")
    assert verify_move(latest)


async def test_a_candidate_that_changes_the_output_is_rejected(services: Services) -> None:
    user = await new_user(services)
    await traffic(
        services,
        user,
        model="echo-chat",
        versions=[("default", "Echo this:\nalpha beta"), ("default", "Echo this:\ngamma delta")],
    )
    await services.experiments.run_pending()
    experiment = await only_experiment(services, user)
    assert (experiment.status, experiment.promotion_status, experiment.pass_rate) == (
        "failed",
        "rejected",
        0.0,
    )
    assert experiment.reason == "pass rate 0% (0/3) is below the required 90%"
    assert [(s.baseline_output, s.candidate_output, s.passed) for s in experiment.samples] == [
        ("Echo this: alpha beta", "Echo this: gamma delta", False)
    ] * 3
    assert experiment.regression is not None
    assert (experiment.regression.fail_count, experiment.regression.status) == (3, "failed")
    assert 0 < experiment.regression.avg_similarity < 1
    [item] = (await services.prompts.list_prompts(user.id)).items
    assert [v.status for v in item.versions] == ["promoted", "candidate"]  # it stays a candidate
    assert item.promoted_version_id == experiment.baseline_prompt_version_id


async def test_a_costlier_candidate_is_rejected_even_when_it_passes(services: Services) -> None:
    user = await new_user(services)
    longer = BASE + " Always double-check the order number and the customer's name before answering."
    await traffic(
        services, user, model="scripted-chat", versions=[("support@v1", BASE), ("support@v2", longer)]
    )
    await services.experiments.run_pending()
    experiment = await only_experiment(services, user)
    assert (experiment.status, experiment.promotion_status) == ("passed", "rejected")
    assert experiment.reason is not None
    assert "exceeds the allowed increase of 10%" in experiment.reason
    regression = experiment.regression
    assert regression is not None
    assert regression.candidate_avg_cost_cents > regression.baseline_avg_cost_cents


async def test_replays_run_at_fill_priority_billed_to_the_owner(services: Services, monkeypatch: Any) -> None:
    user = await new_user(services)
    priorities: list[tuple[Priority, bool]] = []
    start_chat = services.inference.start_chat

    async def spy(ctx: Any, request: Any, **kwargs: Any) -> Any:
        priorities.append((kwargs.get("priority", Priority.INTERACTIVE), kwargs.get("observe", True)))
        return await start_chat(ctx, request, **kwargs)

    monkeypatch.setattr(services.inference, "start_chat", spy)
    await opt_in(services, user, "support")
    # temperature 1: the recorded runs are not deterministic, so the baseline is replayed too.
    for question in ("one", "two"):
        await chat(services, user, BASE, question, header="support@v1", temperature=1)
    await chat(services, user, BASE, "three", header="support@v2", temperature=1)
    before = (await services.usage.summary(user.id)).total_cost_micro_cents
    priorities.clear()
    await services.experiments.run_pending()
    assert priorities == [(Priority.FILL, False)] * 4  # two samples, baseline and candidate each
    logs = [log for log in await services.usage.list_logs(user.id) if log.endpoint == "prompt_replay"]
    assert len(logs) == 4
    assert {log.status for log in logs} == {"succeeded"}
    after = (await services.usage.summary(user.id)).total_cost_micro_cents
    assert after - before == sum(log.cost_micro_cents for log in logs) > 0
    experiment = await only_experiment(services, user)
    assert [s.baseline_recorded for s in experiment.samples] == [False, False]
    # Replays are not traffic: the registry's run counts are unchanged.
    [item] = (await services.prompts.list_prompts(user.id)).items
    assert item.total_runs == 3


async def test_a_deterministic_recorded_run_is_not_replayed_again(services: Services) -> None:
    user = await new_user(services)
    await traffic(
        services, user, model="scripted-chat", versions=[("support@v1", BASE), ("support@v2", BASE)]
    )
    await services.experiments.run_pending()
    experiment = await only_experiment(services, user)
    assert [s.baseline_recorded for s in experiment.samples] == [True] * 3
    replays = [log for log in await services.usage.list_logs(user.id) if log.endpoint == "prompt_replay"]
    assert len(replays) == 3  # the candidate's only


async def test_variables_are_carried_from_the_runs_into_the_candidate(services: Services) -> None:
    user = await new_user(services)
    ctx = await context_for(services, user)
    for registration in (
        {"registry_id": "support", "template": "Help {{product}} users.", "experiments_enabled": True},
        {"registry_id": "support", "template": "Support for {{product}} only."},
    ):
        if registration["template"].startswith("Support"):
            await chat(services, user, "Help Acme users.", "Hi", model="echo-chat", header="support@v1")
        await services.prompts.register_version(ctx, PromptVersionCreateRequest.model_validate(registration))
    await services.experiments.run_pending()
    experiment = await only_experiment(services, user)
    [sample] = experiment.samples
    assert (sample.baseline_output, sample.candidate_output) == ("Help Acme users.", "Support for Acme only.")


async def test_an_experiment_without_baseline_runs_ends_in_error_with_its_reason(services: Services) -> None:
    user = await new_user(services)
    ctx = await context_for(services, user)
    for template in ("One.", "Two."):
        await services.prompts.register_version(
            ctx, PromptVersionCreateRequest(registry_id="faq", template=template, experiments_enabled=True)
        )
    await services.experiments.run_pending()
    experiment = await only_experiment(services, user)
    assert (experiment.status, experiment.promotion_status) == ("error", "rejected")
    assert experiment.reason == "no recorded chat runs of the baseline 'faq@v1' to replay"
    assert experiment.regression is None


async def test_a_baseline_moved_during_the_experiment_blocks_promotion(services: Services) -> None:
    user = await new_user(services)
    await traffic(
        services,
        user,
        model="scripted-chat",
        versions=[("support@v1", BASE), ("support@v2", BASE), ("support@v3", BASE)],
    )
    ctx = await context_for(services, user)
    await services.prompts.move_label(
        ctx, "support", PromptLabelMoveRequest(action="promote", version_id="support@v3", reason="hotfix")
    )
    await services.experiments.run_pending()
    items = {
        e.candidate_prompt_version_id: e for e in (await services.experiments.list_experiments(user.id)).items
    }
    assert items["support@v2"].promotion_status == "rejected"
    assert items["support@v2"].reason is not None
    assert items["support@v2"].reason.startswith("the baseline changed while the experiment ran")


# -- explicit start ------------------------------------------------------------------------------


async def start(services: Services, user: UserCreated, **fields: Any) -> ExperimentDetail:
    ctx = await context_for(services, user)
    return await services.experiments.start(ctx, ExperimentCreateRequest.model_validate(fields))


async def test_an_experiment_can_be_started_explicitly(services: Services) -> None:
    user = await new_user(services)
    await traffic(services, user, model="scripted-chat", versions=[("support@v1", BASE)])
    await chat(services, user, BASE, model="scripted-chat", header="support@v2")
    await services.experiments.run_pending()  # the automatic one
    started = await start(
        services,
        user,
        registry_id="support",
        candidate_version_id="support@v1",
        baseline_version_id="support@v2",
        sample_size=1,
    )
    assert started.model_dump(include={"status", "promotion_status", "trigger", "samples"}) == {
        "status": "queued",
        "promotion_status": "pending",
        "trigger": "manual",
        "samples": [],
    }
    await services.experiments.run_pending()
    done = await services.experiments.get(user.id, started.experiment_id)
    assert (done.status, done.promotion_status, done.sample_count) == ("passed", "promoted", 1)


@pytest.mark.parametrize(
    ("fields", "error", "param"),
    [
        ({"registry_id": "nope", "candidate_version_id": "nope@v2"}, NotFound, None),
        (
            {"registry_id": "support", "candidate_version_id": "support@v9"},
            InvalidRequest,
            "candidate_version_id",
        ),
        (
            {"registry_id": "support", "candidate_version_id": "support@v1"},
            InvalidRequest,
            "candidate_version_id",
        ),
        (
            {"registry_id": "support", "candidate_version_id": "support@v2", "baseline_version_id": "x@1"},
            InvalidRequest,
            "baseline_version_id",
        ),
    ],
)
async def test_explicit_starts_are_checked(
    services: Services, fields: dict[str, Any], error: type[Exception], param: str | None
) -> None:
    user = await new_user(services)
    await traffic(
        services, user, model="scripted-chat", versions=[("support@v1", BASE), ("support@v2", BASE)]
    )
    with pytest.raises(error) as refused:
        await start(services, user, **fields)
    assert getattr(refused.value, "param", None) == param
    assert len((await services.experiments.list_experiments(user.id)).items) == 1  # the automatic one


async def test_experiments_are_per_user(services: Services) -> None:
    owner, other = await new_user(services), await new_user(services)
    await traffic(
        services, owner, model="scripted-chat", versions=[("support@v1", BASE), ("support@v2", BASE)]
    )
    [item] = (await services.experiments.list_experiments(owner.id)).items
    assert (await services.experiments.list_experiments(other.id)).items == []
    with pytest.raises(NotFound):
        await services.experiments.get(other.id, item.experiment_id)


# -- durability ----------------------------------------------------------------------------------


async def test_an_interrupted_experiment_resumes_with_only_its_unfinished_samples(services: Services) -> None:
    user = await new_user(services)
    await traffic(
        services, user, model="scripted-chat", versions=[("support@v1", BASE), ("support@v2", BASE)]
    )
    await services.prompts.recorder.flush()
    first = services.experiments.worker
    replayer = first._replayer
    calls = 0
    real_replay = replayer.replay

    async def dies_on_second_call(ctx: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise SystemError("the process died")
        return await real_replay(ctx, **kwargs)

    replayer.replay = dies_on_second_call  # type: ignore[method-assign]
    with pytest.raises(SystemError):
        await first.run_pending()
    experiment = await only_experiment(services, user)
    assert experiment.status == "running"
    assert [s.status for s in experiment.samples] == ["done", "pending", "pending"]

    # Another process finds the claim live, then (the lease expired) takes it over.
    second = ExperimentWorker(
        services.settings, services.database, services.inference, services.embeddings, services.audit
    )
    assert await second.run_pending() == 0
    async with services.database.write() as conn:
        await conn.execute(update(prompt_experiments).values(lease_until=0))
    second_calls = 0
    second_replay = second._replayer.replay

    async def counted(ctx: Any, **kwargs: Any) -> Any:
        nonlocal second_calls
        second_calls += 1
        return await second_replay(ctx, **kwargs)

    second._replayer.replay = counted  # type: ignore[method-assign]
    assert await second.run_pending() == 1
    assert second_calls == 2
    done = await only_experiment(services, user)
    assert (done.status, done.promotion_status, done.sample_count) == ("passed", "promoted", 3)


async def test_the_background_worker_runs_experiments_as_versions_appear(services: Services) -> None:
    user = await new_user(services)

    async def promoted() -> bool:
        items = (await services.experiments.list_experiments(user.id)).items
        return bool(items) and items[0].promotion_status == "promoted"

    async with background_work(services):
        await traffic(
            services, user, model="scripted-chat", versions=[("support@v1", BASE), ("support@v2", BASE)]
        )
        await until(promoted)
    [item] = (await services.prompts.list_prompts(user.id)).items
    assert item.promoted_version_id == "support@v2"


async def until(check: Callable[[], Awaitable[bool]], *, timeout: float = 20.0) -> None:
    """Poll `check` until it holds, or fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)
