"""Flow policy: entry regions and their per-model RPM, and dedicated lanes with pools of their own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from batchin.config import LaneConfig, RegionLimit, Settings
from batchin.core.billing.limits import InMemoryRateLimiter
from batchin.core.context import CallContext, Principal
from batchin.core.serving.admission import AdmissionController, AdmissionPool
from batchin.core.serving.flow import FlowPolicy
from batchin.core.serving.inference import InferenceService
from batchin.errors import InvalidRequest, RateLimited
from batchin.models.catalog import CatalogEntry, parse_catalog
from batchin.protocol.text import ChatCompletionRequest
from batchin.services import Services
from tests.conftest import MakeUser
from tests.text_fixtures import context_for, eventually, runner_of, scripted_services

CATALOG = """
[models.m1]
kind = ["chat"]
engine = "scripted"
licence = "MIT"
context_length = 64
max_concurrency = 1
queue_size = 1
pricing = { input_per_1m = 1, output_per_1m = 1 }

[models.m2]
kind = ["chat"]
engine = "scripted"
licence = "MIT"
context_length = 64
max_concurrency = 1
queue_size = 1
pricing = { input_per_1m = 1, output_per_1m = 1 }
"""

ENTRIES = {entry.id: entry for entry in parse_catalog(CATALOG, source="test").entries}


def ctx(user: str = "user-1", region: str | None = None) -> CallContext:
    principal = Principal(
        user_id=user,
        key_id=f"key-{user}",
        key_prefix="sk-test",
        rate_limit_rpm=600,
        monthly_budget_cents=None,
    )
    return CallContext(principal=principal, request_id="req_test", region=region)


def policy(**settings: Any) -> FlowPolicy:
    return FlowPolicy(Settings(**settings), InMemoryRateLimiter(), AdmissionController())


async def admit_n(flow: FlowPolicy, call: CallContext, entry: CatalogEntry, n: int) -> None:
    for _ in range(n):
        await flow.admit(call, entry)


# --- regions ---------------------------------------------------------------------------------------


async def test_an_unknown_region_is_refused_naming_the_header() -> None:
    flow = policy(region="eu", regions=["eu", "us"])
    with pytest.raises(InvalidRequest) as refused:
        await flow.admit(ctx(region="mars"), ENTRIES["m1"])
    assert refused.value.status == 400
    assert refused.value.param == "X-BatchIn-Region"


async def test_a_call_without_a_region_header_enters_the_default_region() -> None:
    flow = policy(
        region="eu", regions=["eu", "us"], region_limits=[RegionLimit(region="eu", model="m1", rpm=1)]
    )
    await flow.admit(ctx(), ENTRIES["m1"])
    with pytest.raises(RateLimited):
        await flow.admit(ctx(region="eu"), ENTRIES["m1"])


async def test_a_region_limit_refuses_after_its_rpm() -> None:
    flow = policy(
        region="eu", regions=["eu", "us"], region_limits=[RegionLimit(region="eu", model="m1", rpm=3)]
    )
    await admit_n(flow, ctx(region="eu"), ENTRIES["m1"], 3)
    with pytest.raises(RateLimited) as refused:
        await flow.admit(ctx(user="someone-else", region="eu"), ENTRIES["m1"])
    assert refused.value.status == 429
    assert int(refused.value.headers["Retry-After"]) >= 1


async def test_a_region_limit_leaves_other_regions_alone() -> None:
    flow = policy(
        region="eu", regions=["eu", "us"], region_limits=[RegionLimit(region="eu", model="m1", rpm=2)]
    )
    await admit_n(flow, ctx(region="eu"), ENTRIES["m1"], 2)
    await admit_n(flow, ctx(region="us"), ENTRIES["m1"], 5)


async def test_a_region_limit_leaves_other_models_alone() -> None:
    flow = policy(
        region="eu", regions=["eu", "us"], region_limits=[RegionLimit(region="eu", model="m1", rpm=2)]
    )
    await admit_n(flow, ctx(region="eu"), ENTRIES["m1"], 2)
    await admit_n(flow, ctx(region="eu"), ENTRIES["m2"], 5)


# --- lanes -----------------------------------------------------------------------------------------

GOLD = LaneConfig(name="gold", users=["vip"], max_concurrency=2, queue_size=0)


async def test_a_lane_user_gets_a_pool_with_the_lane_limits() -> None:
    flow = policy(lanes=[GOLD])
    pool = await flow.admit(ctx(user="vip"), ENTRIES["m1"])
    assert (pool.name, pool.max_concurrency, pool.queue_size) == ("m1@gold", 2, 0)


async def test_other_users_share_the_model_pool() -> None:
    flow = policy(lanes=[GOLD])
    first = await flow.admit(ctx(user="a"), ENTRIES["m1"])
    second = await flow.admit(ctx(user="b"), ENTRIES["m1"])
    assert first is second
    assert (first.name, first.max_concurrency, first.queue_size) == ("m1", 1, 1)


async def test_a_saturated_shared_pool_does_not_block_the_lane_user() -> None:
    flow = policy(lanes=[GOLD])
    shared = await flow.admit(ctx(user="a"), ENTRIES["m1"])
    release = asyncio.Event()

    async def hold(pool: AdmissionPool) -> None:
        async with pool.slot():
            await release.wait()

    holders = [asyncio.create_task(hold(shared)) for _ in range(2)]  # one running, one queued: full
    await eventually(lambda: (shared.running, shared.queued) == (1, 1))
    with pytest.raises(RateLimited):
        async with shared.slot():
            pass
    lane = await flow.admit(ctx(user="vip"), ENTRIES["m1"])
    async with asyncio.timeout(0.1), lane.slot() as queued_for:
        assert queued_for == 0.0
    release.set()
    await asyncio.gather(*holders)


async def test_the_lane_concurrency_and_queue_apply_to_its_user() -> None:
    flow = policy(lanes=[GOLD])
    lane = await flow.admit(ctx(user="vip"), ENTRIES["m1"])
    release = asyncio.Event()

    async def hold() -> None:
        async with lane.slot():
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(2)]
    await eventually(lambda: lane.running == 2)
    with pytest.raises(RateLimited):  # GOLD has no queue
        async with lane.slot():
            pass
    release.set()
    await asyncio.gather(*holders)


async def test_a_lane_rpm_limits_the_whole_lane() -> None:
    lane = LaneConfig(name="gold", users=["vip", "vip2"], rpm=2)
    flow = policy(lanes=[lane])
    await flow.admit(ctx(user="vip"), ENTRIES["m1"])
    await flow.admit(ctx(user="vip2"), ENTRIES["m2"])
    with pytest.raises(RateLimited) as refused:
        await flow.admit(ctx(user="vip"), ENTRIES["m1"])
    assert "lane 'gold'" in refused.value.message
    await flow.admit(ctx(user="not-in-a-lane"), ENTRIES["m1"])


# --- through the inference service ---------------------------------------------------------------


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with scripted_services(settings, catalog=CATALOG) as built:
        yield built


def with_lanes(services: Services, *lanes: LaneConfig) -> InferenceService:
    """The inference service of `services`, with lanes bound to users created in the test."""
    settings = services.settings.model_copy(update={"lanes": list(lanes)})
    flow = FlowPolicy(settings, services.limiter, services.admission)
    return InferenceService(
        settings,
        services.registry,
        services.metering,
        flow,
        services.metrics,
        services.audit,
        services.traces,
    )


def chat(model: str = "m1") -> ChatCompletionRequest:
    return ChatCompletionRequest(model=model, messages=[{"role": "user", "content": "hi"}])


async def test_a_lane_user_is_served_while_others_saturate_the_shared_pool(
    services: Services, make_user: MakeUser
) -> None:
    others = [await make_user() for _ in range(3)]
    vip = await make_user()
    inference = with_lanes(services, LaneConfig(name="gold", users=[vip.id], max_concurrency=1, queue_size=0))
    runner = await runner_of(services, "m1")
    runner.gate = asyncio.Event()
    first = await inference.start_chat(await context_for(services, others[0]), chat())
    second = asyncio.create_task(inference.start_chat(await context_for(services, others[1]), chat()))
    await eventually(lambda: services.admission.snapshot()["shared/m1"]["queued"] == 1)
    with pytest.raises(RateLimited):
        await inference.start_chat(await context_for(services, others[2]), chat())

    served = await inference.start_chat(await context_for(services, vip), chat())  # admitted at once
    assert services.admission.snapshot()["gold/m1"]["running"] == 1
    runner.gate.set()
    for started in (served, first, await second):
        assert "".join([d.text async for d in started.generation]) == "Hello, world!"
