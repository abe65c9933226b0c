"""Prompt experiments are opt-in per registry (issue 13): off by default nothing of a conversation is
sampled and nothing is replayed or billed; opted in, runs are sampled and experiments run; opted out
again, the samples are deleted and queued experiments end without spending."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from batchin.config import Settings
from batchin.errors import InvalidRequest
from batchin.protocol.accounts import UserCreated
from batchin.protocol.prompts import (
    ExperimentCreateRequest,
    PromptRegistryUpdateRequest,
    PromptVersionCreateRequest,
)
from batchin.services import Services
from batchin.store.tables import prompt_samples
from tests.prompt_fixtures import GENEROUS_BOUNDS, chat, context_for, opt_in, prompt_services

BASE = "You are a support agent."


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with prompt_services(settings, **GENEROUS_BOUNDS) as built:
        yield built


async def new_user(services: Services) -> UserCreated:
    return await services.accounts.create_user(f"{uuid.uuid4().hex[:12]}@example.com", "Prompt User", 10_000)


async def samples_of(services: Services, user: UserCreated) -> int:
    await services.prompts.recorder.flush()
    async with services.database.read() as conn:
        count = await conn.scalar(
            select(func.count()).select_from(prompt_samples).where(prompt_samples.c.user_id == user.id)
        )
    return int(count or 0)


async def baseline_and_candidate(services: Services, user: UserCreated) -> None:
    """Three greedy runs of support@v1, then one of support@v2 (a new version after the baseline)."""
    for question in ("What are your hours?", "Where are you?", "Can I return this?"):
        await chat(services, user, BASE, question, header="support@v1")
    await chat(services, user, BASE, "Hello?", header="support@v2")


async def replay_logs(services: Services, user: UserCreated) -> int:
    return len([log for log in await services.usage.list_logs(user.id) if log.endpoint == "prompt_replay"])


async def test_by_default_nothing_is_sampled_replayed_or_billed(services: Services) -> None:
    user = await new_user(services)
    await baseline_and_candidate(services, user)
    spent = (await services.usage.summary(user.id)).total_cost_micro_cents
    assert await samples_of(services, user) == 0
    [registry] = (await services.prompts.list_prompts(user.id)).items
    assert registry.experiments_enabled is False
    assert [(v.version_id, v.status) for v in registry.versions] == [
        ("support@v1", "promoted"),
        ("support@v2", "observed"),  # no experiment: it is not a candidate
    ]
    assert await services.experiments.run_pending() == 0
    assert (await services.experiments.list_experiments(user.id)).items == []
    assert await replay_logs(services, user) == 0
    assert (await services.usage.summary(user.id)).total_cost_micro_cents == spent


async def test_an_explicit_experiment_needs_the_opt_in(services: Services) -> None:
    user = await new_user(services)
    await baseline_and_candidate(services, user)
    ctx = await context_for(services, user)
    request = ExperimentCreateRequest(registry_id="support", candidate_version_id="support@v2")
    with pytest.raises(InvalidRequest) as refused:
        await services.experiments.start(ctx, request)
    assert refused.value.param == "registry_id"
    assert "PATCH /v1/prompts/support" in refused.value.message
    assert (await services.experiments.list_experiments(user.id)).items == []


async def test_an_opted_in_registry_samples_its_runs_and_runs_experiments(services: Services) -> None:
    user = await new_user(services)
    await opt_in(services, user, "support")
    await baseline_and_candidate(services, user)
    assert await samples_of(services, user) == 4
    assert await services.experiments.run_pending() == 1
    [experiment] = (await services.experiments.list_experiments(user.id)).items
    assert (experiment.trigger, experiment.status, experiment.sample_count) == ("auto", "passed", 3)
    assert await replay_logs(services, user) == 3  # the candidate's replays (the baseline's were greedy)


async def test_opting_out_deletes_the_samples_and_stops_queued_experiments(services: Services) -> None:
    user = await new_user(services)
    await opt_in(services, user, "support")
    await baseline_and_candidate(services, user)
    spent = (await services.usage.summary(user.id)).total_cost_micro_cents
    await opt_in(services, user, "support", enabled=False)
    assert await samples_of(services, user) == 0
    assert await services.experiments.run_pending() == 1
    [experiment] = (await services.experiments.list_experiments(user.id)).items
    assert (experiment.status, experiment.promotion_status) == ("error", "rejected")
    assert experiment.reason == "experiments are turned off for registry 'support'"
    assert await replay_logs(services, user) == 0
    assert (await services.usage.summary(user.id)).total_cost_micro_cents == spent
    await chat(services, user, BASE, "Still there?", header="support@v1")
    assert await samples_of(services, user) == 0


async def test_registering_a_version_can_opt_a_new_registry_in(services: Services) -> None:
    user = await new_user(services)
    ctx = await context_for(services, user)
    for template in ("One.", "Two."):
        created = await services.prompts.register_version(
            ctx, PromptVersionCreateRequest(registry_id="faq", template=template, experiments_enabled=True)
        )
    assert (created.version_id, created.status) == ("faq@v2", "candidate")
    assert created.experiment_id is not None
    [registry] = (await services.prompts.list_prompts(user.id)).items
    assert registry.experiments_enabled is True


async def test_settings_create_a_registry_and_change_only_what_is_named(services: Services) -> None:
    user = await new_user(services)
    ctx = await context_for(services, user)
    created = await services.prompts.update_registry(
        ctx, "support", PromptRegistryUpdateRequest(experiments_enabled=True)
    )
    assert created.model_dump(exclude={"created_at"}) == {
        "registry_id": "support",
        "display_name": "support",
        "source": "registered",
        "latest_version_id": None,
        "promoted_version_id": None,
        "total_runs": 0,
        "experiments_enabled": True,
        "versions": [],
    }
    renamed = await services.prompts.update_registry(
        ctx, "support", PromptRegistryUpdateRequest(display_name="Support desk")
    )
    assert (renamed.display_name, renamed.experiments_enabled) == ("Support desk", True)


async def test_a_malformed_registry_id_is_refused_and_creates_nothing(services: Services) -> None:
    user = await new_user(services)
    ctx = await context_for(services, user)
    with pytest.raises(InvalidRequest) as refused:
        await services.prompts.update_registry(
            ctx, "a b", PromptRegistryUpdateRequest(experiments_enabled=True)
        )
    assert refused.value.param == "registry_id"
    assert (await services.prompts.list_prompts(user.id)).items == []
