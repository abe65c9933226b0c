"""The prompt registry through the real inference path on scripted runners: backfill from traffic,
run counts and samples, registration, signed label moves."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from batchin.config import Settings
from batchin.core.prompts.labels import verify_move
from batchin.errors import InvalidRequest, NotFound
from batchin.protocol.accounts import UserCreated
from batchin.protocol.prompts import (
    PromptLabelMove,
    PromptLabelMoveRequest,
    PromptRegistryItem,
    PromptVersionCreateRequest,
    PromptVersionDetail,
)
from batchin.services import Services
from batchin.store.tables import prompt_experiments, prompt_samples, prompt_versions
from tests.prompt_fixtures import GENEROUS_BOUNDS, chat, context_for, opt_in, prompt_services

SYSTEM = "You are a support agent.\nAnswer briefly."
EDITED = "You are a support agent.\nAnswer briefly and politely."
REGISTRY = "sys-" + hashlib.sha256(b"You are a support agent.").hexdigest()[:10]  # derived from SYSTEM


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with prompt_services(settings, **GENEROUS_BOUNDS) as built:
        yield built


async def new_user(services: Services) -> UserCreated:
    return await services.accounts.create_user(f"{uuid.uuid4().hex[:12]}@example.com", "Prompt User", 10_000)


async def registry_of(services: Services, user: UserCreated, registry_id: str) -> PromptRegistryItem:
    listing = await services.prompts.list_prompts(user.id)
    return next(item for item in listing.items if item.registry_id == registry_id)


async def sample_count(services: Services, user: UserCreated, version_id: str) -> int:
    async with services.database.read() as conn:
        count = await conn.scalar(
            select(func.count())
            .select_from(prompt_samples)
            .where(prompt_samples.c.user_id == user.id, prompt_samples.c.version_id == version_id)
        )
    return int(count or 0)


# -- backfill from traffic --------------------------------------------------------------------------


async def test_traffic_is_backfilled_into_the_registry_with_run_counts(services: Services) -> None:
    user = await new_user(services)
    _, ctx = await chat(services, user, SYSTEM)
    version = ctx.prompt_version
    assert version.startswith("sys-")
    assert "@" in version
    await chat(services, user, SYSTEM, "Another question")
    listing = await services.prompts.list_prompts(user.id)
    assert listing.status == "ready"
    assert listing.docs == "/docs/prompts"
    [item] = listing.items
    assert item.model_dump(exclude={"created_at", "versions"}) == {
        "registry_id": version.split("@")[0],
        "display_name": "You are a support agent.",
        "source": "auto_backfill",
        "latest_version_id": version,
        "promoted_version_id": version,  # the first version is the registry's baseline
        "total_runs": 2,
        "experiments_enabled": False,
    }
    assert [(v.version_id, v.status, v.total_runs, v.source) for v in item.versions] == [
        (version, "promoted", 2, "auto_backfill")
    ]


async def test_a_new_version_of_an_opted_in_registry_becomes_a_candidate_with_an_experiment(
    services: Services,
) -> None:
    user = await new_user(services)
    _, first = await chat(services, user, SYSTEM)
    await opt_in(services, user, first.prompt_version.split("@")[0])
    _, second = await chat(services, user, EDITED)
    item = await registry_of(services, user, first.prompt_version.split("@")[0])
    assert item.total_runs == 2
    assert item.latest_version_id == second.prompt_version
    assert item.promoted_version_id == first.prompt_version
    assert [(v.version_id, v.status) for v in item.versions] == [
        (first.prompt_version, "promoted"),
        (second.prompt_version, "candidate"),
    ]
    experiments = await services.experiments.list_experiments(user.id)
    [experiment] = experiments.items
    assert (experiment.status, experiment.promotion_status, experiment.trigger) == (
        "queued",
        "pending",
        "auto",
    )
    assert experiment.baseline_prompt_version_id == first.prompt_version
    assert experiment.candidate_prompt_version_id == second.prompt_version


async def test_named_versions_are_counted_under_their_registry(services: Services) -> None:
    user = await new_user(services)
    for _ in range(3):
        await chat(services, user, SYSTEM, header="support@v1")
    _, ctx = await chat(services, user, None, header="support@v2")
    assert ctx.prompt_version == "support@v2"
    item = await registry_of(services, user, "support")
    assert (item.display_name, item.total_runs) == ("support", 4)
    assert [(v.version_id, v.total_runs) for v in item.versions] == [("support@v1", 3), ("support@v2", 1)]


async def test_a_call_with_neither_name_nor_system_prompt_stays_default(services: Services) -> None:
    user = await new_user(services)
    _, ctx = await chat(services, user, None)
    assert ctx.prompt_version == "default"
    assert (await services.prompts.list_prompts(user.id)).items == []


async def test_a_malformed_version_name_is_refused_before_any_work(services: Services) -> None:
    user = await new_user(services)
    with pytest.raises(InvalidRequest) as refused:
        await chat(services, user, SYSTEM, header="bad name")
    assert refused.value.param == "X-BatchIn-Prompt-Version"
    assert (await services.usage.summary(user.id)).total_requests == 0


async def test_each_version_keeps_only_its_newest_samples(settings: Settings) -> None:
    async with prompt_services(settings, prompt_samples_per_version=2) as services:
        user = await new_user(services)
        await opt_in(services, user, REGISTRY)
        for question in ("q1", "q2", "q3"):
            _, ctx = await chat(services, user, SYSTEM, question)
        await services.prompts.recorder.flush()
        await chat(services, user, SYSTEM, "q4")
        await services.prompts.recorder.flush()
        async with services.database.read() as conn:
            kept = list(
                await conn.scalars(
                    select(prompt_samples.c.messages)
                    .where(prompt_samples.c.version_id == ctx.prompt_version)
                    .order_by(prompt_samples.c.id)
                )
            )
        assert [json.loads(m)[-1]["content"] for m in kept] == ["q3", "q4"]
        assert (await registry_of(services, user, ctx.prompt_version.split("@")[0])).total_runs == 4


async def test_registries_are_per_user(services: Services) -> None:
    owner, other = await new_user(services), await new_user(services)
    await chat(services, owner, SYSTEM, header="support@v1")
    assert (await services.prompts.list_prompts(other.id)).items == []
    await chat(services, other, SYSTEM, header="support@v9")
    assert [v.version_id for v in (await registry_of(services, other, "support")).versions] == ["support@v9"]


# -- registration --------------------------------------------------------------------------------


async def register(
    services: Services, user: UserCreated, registry_id: str, template: str, **fields: object
) -> PromptVersionDetail:
    ctx = await context_for(services, user)
    body = PromptVersionCreateRequest.model_validate(
        {"registry_id": registry_id, "template": template, **fields}
    )
    return await services.prompts.register_version(ctx, body)


async def test_registering_versions_names_them_and_starts_an_experiment(services: Services) -> None:
    user = await new_user(services)
    first = await register(
        services, user, "faq", "You answer questions about {{product}}.", experiments_enabled=True
    )
    assert first.model_dump(exclude={"created_at"}) == {
        "version_id": "faq@v1",
        "registry_id": "faq",
        "status": "promoted",
        "source": "registered",
        "total_runs": 0,
        "template": "You answer questions about {{product}}.",
        "variables": ["product"],
        "experiment_id": None,
    }
    second = await register(services, user, "faq", "Answer {{product}} questions.", version="short")
    assert (second.version_id, second.status) == ("faq@short", "candidate")
    assert second.experiment_id is not None
    experiment = await services.experiments.get(user.id, second.experiment_id)
    assert (experiment.trigger, experiment.baseline_prompt_version_id) == ("auto", "faq@v1")
    item = await registry_of(services, user, "faq")
    assert (item.source, item.latest_version_id, item.promoted_version_id) == (
        "registered",
        "faq@short",
        "faq@v1",
    )


async def test_registering_an_existing_version_changes_nothing(services: Services) -> None:
    user = await new_user(services)
    await register(services, user, "faq", "One.", version="v1")
    with pytest.raises(InvalidRequest) as refused:
        await register(services, user, "faq", "Two.", version="v1")
    assert refused.value.param == "version"
    async with services.database.read() as conn:
        templates = list(await conn.scalars(select(prompt_versions.c.template)))
        experiments = await conn.scalar(select(func.count()).select_from(prompt_experiments))
    assert (templates, experiments) == (["One."], 0)


async def test_declared_variables_must_match_the_template(services: Services) -> None:
    user = await new_user(services)
    with pytest.raises(InvalidRequest) as refused:
        await register(services, user, "faq", "Hi {{name}}.", variables=["name", "product"])
    assert refused.value.param == "variables"
    assert (await services.prompts.list_prompts(user.id)).items == []


# -- the promoted label ----------------------------------------------------------------------------


async def move(services: Services, user: UserCreated, registry_id: str, **fields: object) -> PromptLabelMove:
    ctx = await context_for(services, user)
    return await services.prompts.move_label(ctx, registry_id, PromptLabelMoveRequest.model_validate(fields))


async def test_promote_and_rollback_move_the_label_with_signed_records(services: Services) -> None:
    user = await new_user(services)
    await register(services, user, "faq", "One.")
    await register(services, user, "faq", "Two.")
    promoted = await move(
        services, user, "faq", action="promote", version_id="faq@v2", reason="better answers"
    )
    assert promoted.model_dump(include={"action", "from_version_id", "to_version_id", "reason", "label"}) == {
        "label": "promoted",
        "action": "promote",
        "from_version_id": "faq@v1",
        "to_version_id": "faq@v2",
        "reason": "better answers",
    }
    assert promoted.actor.startswith("key:")
    rolled = await move(services, user, "faq", action="rollback", reason="complaints")
    assert (rolled.from_version_id, rolled.to_version_id) == ("faq@v2", "faq@v1")
    item = await registry_of(services, user, "faq")
    assert item.promoted_version_id == "faq@v1"
    assert [(v.version_id, v.status) for v in item.versions] == [
        ("faq@v1", "promoted"),
        ("faq@v2", "retired"),
    ]

    history = (await services.prompts.label_history(user.id, "faq")).items
    assert [(m.actor.split(":")[0], m.action, m.to_version_id) for m in history] == [
        ("key", "rollback", "faq@v1"),
        ("key", "promote", "faq@v2"),
        ("system", "promote", "faq@v1"),
    ]
    public = services.audit.current_key()
    for record in history:
        assert record.key_id == public.key_id
        assert record.public_key == f"ed25519:{public.verify_key_hex}"
        assert verify_move(record)
    forged = history[0].model_copy(update={"payload": {**history[0].payload, "reason": "nobody complained"}})
    assert not verify_move(forged)


async def test_label_moves_refuse_unknown_targets_and_change_nothing(services: Services) -> None:
    user = await new_user(services)
    await register(services, user, "faq", "One.")
    with pytest.raises(NotFound):
        await move(services, user, "faq", action="promote", version_id="faq@nope", reason="x")
    with pytest.raises(NotFound):
        await move(services, user, "nope", action="promote", version_id="nope@v1", reason="x")
    with pytest.raises(InvalidRequest) as nothing_before:
        await move(services, user, "faq", action="rollback", reason="x")
    assert nothing_before.value.param == "version_id"
    with pytest.raises(InvalidRequest):
        await move(services, user, "faq", action="promote", reason="x")
    assert len((await services.prompts.label_history(user.id, "faq")).items) == 1
