"""USD and CNY accounts through the real ASGI app (issue 15): a CNY account pays its models' CNY
prices and sees every amount in fen, a USD account is unchanged, /v1/models prices in the caller's
currency (anonymous callers: the entry's, with every currency listed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx2
import pytest

from batchin.config import Settings
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser, assert_error, bearer
from tests.text_fixtures import asgi_client, balance_units, logs_of, scripted_services

CATALOG = """
[models.priced-chat]
kind = ["chat"]
engine = "scripted"
licence = "MIT"
context_length = 64
engine_options = { tokens = ["Ni", " hao"] }
pricing = { input_per_1m = 1.5, output_per_1m = 3 }
pricing_cny = { input_per_1m = 10.5, output_per_1m = 21 }

[models.usd-only-chat]
kind = ["chat"]
engine = "scripted"
licence = "MIT"
context_length = 64
engine_options = { tokens = ["Hi"] }
pricing = { input_per_1m = 1, output_per_1m = 2 }
"""
# Ledger units (millionths of a cent or fen) per token: 1.5 USD/1M = 150 per token; 10.5 CNY/1M = 1050.
UNITS_PER_TOKEN = {"USD": (150, 300), "CNY": (1050, 2100)}
RECORD_UNITS = {"USD": 200_000, "CNY": 1_400_000}  # $0.002 and ¥0.014 per caller-asserted record
MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with scripted_services(
        settings,
        catalog=CATALOG,
        vaas_record_price_usd=Decimal("0.002"),
        vaas_record_price_cny=Decimal("0.014"),
        entries={"api.example.cn": "china", "api.example.com": "global"},
    ) as built:
        yield built


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx2.AsyncClient]:
    async with asgi_client(services) as built:
        yield built


async def chat(client: httpx2.AsyncClient, user: UserCreated, model: str = "priced-chat") -> httpx2.Response:
    body = {"model": model, "messages": MESSAGES}
    return await client.post("/v1/chat/completions", json=body, headers=bearer(user.api_key))


async def get(client: httpx2.AsyncClient, path: str, user: UserCreated | None = None, **headers: str) -> Any:
    response = await client.get(path, headers={**(bearer(user.api_key) if user else {}), **headers})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("currency", ["USD", "CNY"])
async def test_a_call_is_charged_at_the_accounts_currency_prices(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser, currency: str
) -> None:
    user = await make_user(credit_cents=1_000, currency=currency)
    before = await balance_units(services, user)

    response = await chat(client, user)

    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    per_in, per_out = UNITS_PER_TOKEN[currency]
    cost = usage["prompt_tokens"] * per_in + usage["completion_tokens"] * per_out
    assert before - await balance_units(services, user) == cost
    [log] = await get(client, "/v1/usage/logs", user)
    assert (log["cost_micro_cents"], log["currency"]) == (cost, currency)
    summary = await get(client, "/v1/usage/summary", user)
    assert (summary["total_cost_micro_cents"], summary["currency"]) == (cost, currency)
    [by_model] = await get(client, "/v1/usage/by-model", user)
    assert (by_model["model"], by_model["currency"]) == ("priced-chat", currency)
    [key] = await get(client, "/v1/keys", user)
    assert key["currency"] == currency


async def test_a_cny_account_cannot_call_a_model_without_a_cny_price(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=1_000, currency="CNY")
    before = await balance_units(services, user)

    error = assert_error(await chat(client, user, "usd-only-chat"), 400, "invalid_request")

    assert error["param"] == "model"
    assert "no CNY price" in error["message"]
    assert await balance_units(services, user) == before
    assert await logs_of(services, user) == []


@pytest.mark.parametrize("currency", ["USD", "CNY"])
async def test_a_caller_asserted_record_costs_its_currencys_price(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser, currency: str
) -> None:
    user = await make_user(credit_cents=100, currency=currency)
    before = await balance_units(services, user)
    body = {"input_text": "a", "output_text": "b", "model_id": "priced-chat"}

    response = await client.post("/v1/vaas", json=body, headers=bearer(user.api_key))

    assert response.status_code == 200, response.text
    assert before - await balance_units(services, user) == RECORD_UNITS[currency]


async def test_models_are_priced_in_a_cny_callers_currency_only(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user(currency="CNY")

    listed = await get(client, "/v1/models", user)

    [card] = listed["data"]  # the model without a CNY price is not offered
    assert card["id"] == "priced-chat"
    assert card["pricing"]["currency"] == "CNY"
    assert (card["pricing"]["std_input"], card["pricing"]["std_output"]) == (10.5, 21.0)
    assert card["prices"] == [card["pricing"]]
    one = await get(client, "/v1/models/priced-chat", user)
    assert one["pricing"] == card["pricing"]


async def test_models_are_priced_in_a_usd_callers_currency_only(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user(currency="USD")

    cards = {c["id"]: c for c in (await get(client, "/v1/models", user))["data"]}

    assert set(cards) == {"priced-chat", "usd-only-chat"}
    assert cards["priced-chat"]["pricing"]["currency"] == "USD"
    assert [p["currency"] for p in cards["priced-chat"]["prices"]] == ["USD"]


@pytest.mark.parametrize(
    ("host", "shown"), [("api.example.com", "USD"), ("api.example.cn", "CNY"), ("testserver", "USD")]
)
async def test_anonymous_callers_see_every_currency_and_their_entrys_first(
    client: httpx2.AsyncClient, host: str, shown: str
) -> None:
    cards = {c["id"]: c for c in (await get(client, "/v1/models", Host=host))["data"]}

    assert set(cards) == {"priced-chat", "usd-only-chat"}
    priced = cards["priced-chat"]
    assert priced["pricing"]["currency"] == shown
    assert [(p["currency"], p["std_input"]) for p in priced["prices"]] == [("USD", 1.5), ("CNY", 10.5)]
    # A model priced in USD only shows that price, labelled USD, on either entry.
    assert cards["usd-only-chat"]["pricing"]["currency"] == "USD"
    assert [p["currency"] for p in cards["usd-only-chat"]["prices"]] == ["USD"]


async def test_an_invalid_key_gets_the_public_view_not_an_error(client: httpx2.AsyncClient) -> None:
    listed = await get(client, "/v1/models", Authorization="Bearer batchin_api_not_a_real_key")
    assert {c["id"] for c in listed["data"]} == {"priced-chat", "usd-only-chat"}
