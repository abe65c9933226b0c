"""/v1/usage/*: usage written through the metering wrapper, read back over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from typing import Any

import httpx2
import pytest

from batchin.core.billing.money import UNITS_PER_CENT, units_to_cents
from batchin.core.context import CallContext
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser, assert_error, bearer


class Boom(Exception):
    pass


async def context_for(services: Services, user: UserCreated) -> CallContext:
    principal = await services.auth.authenticate(user.api_key)
    return CallContext(principal=principal, request_id=f"req_{uuid.uuid4().hex}")


async def metered(
    services: Services,
    user: UserCreated,
    *,
    model: str = "qwen3.5-27b",
    cost_units: int = UNITS_PER_CENT,
    input_tokens: int = 10,
    output_tokens: int = 5,
) -> str:
    """One successful metered call; returns its request id."""
    ctx = await context_for(services, user)
    async with services.metering.call(
        ctx, model=model, endpoint="chat.completions", max_cost_units=100 * UNITS_PER_CENT
    ) as call:
        call.begin()
        call.record(cost_units=cost_units, input_tokens=input_tokens, output_tokens=output_tokens)
    return ctx.request_id


async def get_json(client: httpx2.AsyncClient, path: str, user: UserCreated) -> Any:
    response = await client.get(path, headers=bearer(user.api_key))
    assert response.status_code == 200, response.text
    return response.json()


async def balance(client: httpx2.AsyncClient, user: UserCreated) -> int | float:
    result: int | float = (await get_json(client, "/v1/users/me", user))["credit_balance_cents"]
    return result


# --- listing logs ----------------------------------------------------------------------------------


async def test_a_log_has_the_seed_fields_and_exact_cost(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=100)
    request_id = await metered(
        services, user, cost_units=2 * UNITS_PER_CENT, input_tokens=120, output_tokens=88
    )
    [log] = await get_json(client, "/v1/usage/logs?limit=50&offset=0", user)
    uuid.UUID(log["id"])
    assert log["model"] == "qwen3.5-27b"
    assert (log["input_tokens"], log["output_tokens"]) == (120, 88)
    assert (log["cost_cents"], log["cost_micro_cents"]) == (2, 2 * UNITS_PER_CENT)
    assert log["request_id"] == request_id
    assert log["key_id"] == user.key_id
    assert log["endpoint"] == "chat.completions"
    assert log["status"] == "succeeded"
    assert log["created_at"].endswith("Z")
    assert await balance(client, user) == 98


async def test_logs_are_newest_first_and_page(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    request_ids = [await metered(services, user) for _ in range(5)]
    newest_first = list(reversed(request_ids))
    pages = [
        [log["request_id"] for log in await get_json(client, f"/v1/usage/logs?limit=2&offset={offset}", user)]
        for offset in (0, 2, 4, 6)
    ]
    assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:5], []]
    everything = await get_json(client, "/v1/usage/logs", user)
    assert [log["request_id"] for log in everything] == newest_first


async def test_limit_bounds_are_inclusive(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    for _ in range(2):
        await metered(services, user)
    assert len(await get_json(client, "/v1/usage/logs?limit=1", user)) == 1
    assert len(await get_json(client, "/v1/usage/logs?limit=500", user)) == 2


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=1.5", "limit"),
        ("offset=-1", "offset"),
        ("offset=abc", "offset"),
        # Found by schemathesis: an offset beyond 64 bits overflowed SQLite's integer (a 500).
        (f"offset={2**64}", "offset"),
        (f"offset={2**63}", "offset"),
    ],
)
async def test_bad_paging_parameters_are_refused(
    client: httpx2.AsyncClient, make_user: MakeUser, query: str, param: str
) -> None:
    user = await make_user()
    response = await client.get(f"/v1/usage/logs?{query}", headers=bearer(user.api_key))
    assert assert_error(response, 400, "invalid_request")["param"] == param


async def test_the_largest_64_bit_offset_is_an_empty_page(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    response = await client.get(f"/v1/usage/logs?offset={2**63 - 1}", headers=bearer(user.api_key))
    assert (response.status_code, response.json()) == (200, [])


@pytest.mark.parametrize("path", ["/v1/usage/logs", "/v1/usage/summary", "/v1/usage/by-model"])
async def test_usage_needs_a_key(client: httpx2.AsyncClient, path: str) -> None:
    assert_error(await client.get(path), 401, "unauthorized")


async def test_logs_are_per_user(client: httpx2.AsyncClient, services: Services, make_user: MakeUser) -> None:
    alice, bob = await make_user(), await make_user()
    for _ in range(3):
        await metered(services, alice, model="alice-model")
    bob_request = await metered(services, bob, model="bob-model")
    bob_logs = await get_json(client, "/v1/usage/logs", bob)
    assert [(log["request_id"], log["model"]) for log in bob_logs] == [(bob_request, "bob-model")]
    assert [m["model"] for m in await get_json(client, "/v1/usage/by-model", bob)] == ["bob-model"]
    assert (await get_json(client, "/v1/usage/summary", bob))["total_requests"] == 1


# --- totals ----------------------------------------------------------------------------------------


async def test_summary_and_by_model_equal_the_sums_of_the_logs(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=1_000)
    calls = [
        ("model-a", 1_234_567, 11, 7),
        ("model-b", 3 * UNITS_PER_CENT, 100, 0),
        ("model-a", 1, 0, 1),
        ("model-b", 999_999, 40, 41),
        ("model-a", 0, 5, 5),
    ]
    for model, cost, tokens_in, tokens_out in calls:
        await metered(
            services, user, model=model, cost_units=cost, input_tokens=tokens_in, output_tokens=tokens_out
        )
    logs = await get_json(client, "/v1/usage/logs?limit=500", user)
    summary = await get_json(client, "/v1/usage/summary", user)
    by_model = await get_json(client, "/v1/usage/by-model", user)

    def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
        cost = sum(r["cost_micro_cents"] for r in rows)
        return {
            "total_requests": len(rows),
            "total_input_tokens": sum(r["input_tokens"] for r in rows),
            "total_output_tokens": sum(r["output_tokens"] for r in rows),
            "total_cost_cents": units_to_cents(cost),
            "total_cost_micro_cents": cost,
            "currency": "USD",
        }

    assert summary == {**totals(logs), "storage_bytes": 0, "storage_quota_bytes": 5 * 1024**3}
    assert summary["total_cost_micro_cents"] == sum(c[1] for c in calls)
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for log in logs:
        grouped[log["model"]].append(log)
    assert {row.pop("model"): row for row in by_model} == {m: totals(rows) for m, rows in grouped.items()}
    spent = 1_000 * UNITS_PER_CENT - round((await balance(client, user)) * UNITS_PER_CENT)
    assert spent == summary["total_cost_micro_cents"]


async def test_totals_of_a_user_without_usage_are_zero(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    assert await get_json(client, "/v1/usage/summary", user) == {
        "total_requests": 0,
        "total_input_tokens": 0,
        "total_output_tokens": 0,
        "total_cost_cents": 0,
        "total_cost_micro_cents": 0,
        "currency": "USD",
        "storage_bytes": 0,
        "storage_quota_bytes": 5 * 1024**3,
    }
    assert await get_json(client, "/v1/usage/by-model", user) == []
    assert await get_json(client, "/v1/usage/logs", user) == []


# --- how a metered call ends -----------------------------------------------------------------------


async def test_error_before_begin_logs_nothing_and_restores_the_balance(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=50)
    ctx = await context_for(services, user)
    held: list[int | float] = []

    async def refused_at_admission() -> None:
        async with services.metering.call(ctx, model="m", endpoint="e", max_cost_units=20 * UNITS_PER_CENT):
            held.append(await balance(client, user))
            raise Boom

    with pytest.raises(Boom):
        await refused_at_admission()
    assert held == [30]  # the reservation was held while the call ran
    assert await get_json(client, "/v1/usage/logs", user) == []
    assert (await get_json(client, "/v1/usage/summary", user))["total_requests"] == 0
    assert await balance(client, user) == 50


async def test_error_after_begin_writes_a_failed_log_with_no_charge(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=50)
    ctx = await context_for(services, user)

    async def engine_fails() -> None:
        async with services.metering.call(
            ctx, model="m", endpoint="e", max_cost_units=20 * UNITS_PER_CENT
        ) as call:
            call.begin()
            call.record(cost_units=7 * UNITS_PER_CENT, input_tokens=3, output_tokens=2)
            raise Boom

    with pytest.raises(Boom):
        await engine_fails()
    [log] = await get_json(client, "/v1/usage/logs", user)
    assert (log["status"], log["cost_micro_cents"], log["request_id"]) == ("failed", 0, ctx.request_id)
    assert (log["input_tokens"], log["output_tokens"]) == (3, 2)
    assert await balance(client, user) == 50


async def test_cancel_after_begin_settles_the_recorded_part(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=50)
    ctx = await context_for(services, user)
    streaming = asyncio.Event()

    async def stream() -> None:
        async with services.metering.call(
            ctx, model="m", endpoint="e", max_cost_units=20 * UNITS_PER_CENT
        ) as call:
            call.begin()
            call.record(cost_units=3 * UNITS_PER_CENT + 5, input_tokens=8, output_tokens=4)
            streaming.set()
            await asyncio.Event().wait()  # the client goes away mid-stream

    task = asyncio.create_task(stream())
    await streaming.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [log] = await get_json(client, "/v1/usage/logs", user)
    assert (log["status"], log["cost_micro_cents"]) == ("cancelled", 3 * UNITS_PER_CENT + 5)
    assert (log["input_tokens"], log["output_tokens"]) == (8, 4)
    assert await balance(client, user) == units_to_cents(47 * UNITS_PER_CENT - 5) == 46.999995


async def test_cancel_before_begin_releases_everything(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=50)
    ctx = await context_for(services, user)
    admitted = asyncio.Event()

    async def queued() -> None:
        async with services.metering.call(ctx, model="m", endpoint="e", max_cost_units=20 * UNITS_PER_CENT):
            admitted.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(queued())
    await admitted.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await get_json(client, "/v1/usage/logs", user) == []
    assert await balance(client, user) == 50
