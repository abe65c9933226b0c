"""/v1/topup/* through the real ASGI app, with Stripe played by the fake server on a real port."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest

from batchin.config import Settings, UsdcChain
from batchin.core.billing.topups import TopupService
from batchin.services import Services
from tests.conftest import MakeUser, assert_error, bearer
from tests.fakes.stripe_server import FakeStripe, running_fake_stripe, signature_header

SECRET_KEY = "sk_test_batchin_fake_http_0123456789"
WEBHOOK_SECRET = "whsec_batchin_http_test_secret"
CHAINS = [
    {
        "chain": "ethereum",
        "deposit_address": "0x1111111111111111111111111111111111111111",
        "required_confirmations": 12,
    },
    {
        "chain": "polygon",
        "deposit_address": "0x2222222222222222222222222222222222222222",
        "required_confirmations": 64,
    },
]


@pytest.fixture(scope="module")
def fake_stripe_server() -> Iterator[FakeStripe]:
    with running_fake_stripe(SECRET_KEY) as fake:
        yield fake


@pytest.fixture
def fake_stripe(fake_stripe_server: FakeStripe) -> FakeStripe:
    fake_stripe_server.reset()
    return fake_stripe_server


@pytest.fixture
def settings(settings: Settings, fake_stripe: FakeStripe) -> Settings:
    return settings.model_copy(
        update={
            "stripe_secret_key": SECRET_KEY,
            "stripe_webhook_secret": WEBHOOK_SECRET,
            "stripe_api_base": fake_stripe.url,
            "usdc_chains": [UsdcChain(**c) for c in CHAINS],
        }
    )


@pytest.fixture(autouse=True)
async def _close_stripe_client(services: Services) -> AsyncIterator[None]:
    yield
    await services.topups.close()


def reconfigure(services: Services, settings: Settings, **changes: Any) -> None:
    """Swap in a top-up service built from other settings (the app reads services at request time)."""
    services.topups = TopupService(services.database, settings.model_copy(update=changes))


async def post_event(
    client: httpx2.AsyncClient, event: dict[str, Any], *, secret: str = WEBHOOK_SECRET, age_seconds: int = 0
) -> httpx2.Response:
    payload = json.dumps(event).encode()
    header = signature_header(payload, secret, int(time.time()) - age_seconds)
    return await client.post(
        "/v1/topup/stripe/webhook",
        content=payload,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )


async def balance(client: httpx2.AsyncClient, key: str) -> Any:
    response = await client.get("/v1/users/me", headers=bearer(key))
    assert response.status_code == 200, response.text
    return response.json()["credit_balance_cents"]


async def history(client: httpx2.AsyncClient, key: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/topup/history", headers=bearer(key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, list)
    return body


async def start_checkout(client: httpx2.AsyncClient, key: str, amount: int = 5000) -> dict[str, Any]:
    response = await client.post(
        "/v1/topup/stripe/checkout", json={"amount_cents": amount}, headers=bearer(key)
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_checkout_then_paid_webhook_credits_the_balance_once(
    client: httpx2.AsyncClient, make_user: MakeUser, fake_stripe: FakeStripe
) -> None:
    user = await make_user(credit_cents=0)
    before = await balance(client, user.api_key)

    created = await start_checkout(client, user.api_key, 5000)

    assert set(created) == {"checkout_url", "session_id", "currency", "payment_method_types"}
    assert (created["currency"], created["payment_method_types"]) == ("USD", ["card"])
    assert created["session_id"].startswith("cs_test_")
    assert created["checkout_url"] == fake_stripe.sessions[created["session_id"]]["url"]
    [pending] = await history(client, user.api_key)
    assert pending["reference_id"] == created["session_id"]
    assert (pending["source"], pending["status"], pending["amount_cents"]) == ("stripe", "pending", 5000)

    delivered = await post_event(client, fake_stripe.paid_event(created["session_id"]))

    assert delivered.status_code == 200, delivered.text
    assert delivered.json() == {"received": True, "credited": True}
    [completed] = await history(client, user.api_key)
    assert (completed["id"], completed["status"]) == (pending["id"], "completed")
    assert await balance(client, user.api_key) == before + 5000


async def test_ten_concurrent_webhook_deliveries_credit_once(
    client: httpx2.AsyncClient, make_user: MakeUser, fake_stripe: FakeStripe
) -> None:
    user = await make_user(credit_cents=10)
    event = fake_stripe.paid_event((await start_checkout(client, user.api_key, 2000))["session_id"])

    responses = await asyncio.gather(*(post_event(client, event) for _ in range(10)))

    assert [r.status_code for r in responses] == [200] * 10
    assert sorted(r.json()["credited"] for r in responses) == [False] * 9 + [True]
    assert await balance(client, user.api_key) == 2010
    again = await post_event(client, event)
    assert again.json() == {"received": True, "credited": False}
    assert await balance(client, user.api_key) == 2010


@pytest.mark.parametrize(
    ("secret", "age_seconds"),
    [("whsec_not_ours", 0), (WEBHOOK_SECRET, 600)],
    ids=["wrong-secret", "stale-timestamp"],
)
async def test_badly_signed_webhook_is_400_and_credits_nothing(
    client: httpx2.AsyncClient, make_user: MakeUser, fake_stripe: FakeStripe, secret: str, age_seconds: int
) -> None:
    user = await make_user(credit_cents=0)
    event = fake_stripe.paid_event((await start_checkout(client, user.api_key))["session_id"])

    response = await post_event(client, event, secret=secret, age_seconds=age_seconds)

    assert assert_error(response, 400, "invalid_request")["param"] == "Stripe-Signature"
    assert await balance(client, user.api_key) == 0
    assert [h["status"] for h in await history(client, user.api_key)] == ["pending"]


async def test_unsigned_webhook_is_400_and_credits_nothing(
    client: httpx2.AsyncClient, make_user: MakeUser, fake_stripe: FakeStripe
) -> None:
    user = await make_user(credit_cents=0)
    event = fake_stripe.paid_event((await start_checkout(client, user.api_key))["session_id"])

    response = await client.post("/v1/topup/stripe/webhook", content=json.dumps(event).encode())

    assert assert_error(response, 400, "invalid_request")["param"] == "Stripe-Signature"
    assert await balance(client, user.api_key) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"amount_cents": "5000"},
        {"amount_cents": 50.0},
        {"amount_cents": 5000.5},
        {"amount_cents": True},
        {"amount_cents": None},
        {"amount_cents": [5000]},
        {},
    ],
)
async def test_checkout_amount_of_the_wrong_type_is_400_and_creates_nothing(
    client: httpx2.AsyncClient, make_user: MakeUser, fake_stripe: FakeStripe, body: dict[str, Any]
) -> None:
    user = await make_user(credit_cents=0)
    response = await client.post("/v1/topup/stripe/checkout", json=body, headers=bearer(user.api_key))
    assert assert_error(response, 400, "invalid_request")["param"] == "amount_cents"
    assert fake_stripe.requests == []
    assert await history(client, user.api_key) == []


@pytest.mark.parametrize("amount", [0, -1, 99, 1_000_001, 2**63 - 1])
async def test_checkout_amount_out_of_range_is_400_and_creates_nothing(
    client: httpx2.AsyncClient, make_user: MakeUser, fake_stripe: FakeStripe, amount: int
) -> None:
    user = await make_user(credit_cents=0)
    response = await client.post(
        "/v1/topup/stripe/checkout", json={"amount_cents": amount}, headers=bearer(user.api_key)
    )
    error = assert_error(response, 400, "invalid_request")
    assert error["param"] == "amount_cents"
    assert "between 100 and 1000000" in error["message"]
    assert fake_stripe.requests == []
    assert await history(client, user.api_key) == []


async def test_checkout_needs_a_key(client: httpx2.AsyncClient, fake_stripe: FakeStripe) -> None:
    response = await client.post("/v1/topup/stripe/checkout", json={"amount_cents": 5000})
    assert_error(response, 401, "unauthorized")
    assert fake_stripe.requests == []


async def test_checkout_without_stripe_configured_is_503_naming_the_setting(
    client: httpx2.AsyncClient, services: Services, settings: Settings, make_user: MakeUser
) -> None:
    reconfigure(services, settings, stripe_secret_key=None)
    user = await make_user(credit_cents=0)
    response = await client.post(
        "/v1/topup/stripe/checkout", json={"amount_cents": 5000}, headers=bearer(user.api_key)
    )
    assert "BATCHIN_STRIPE_SECRET_KEY" in assert_error(response, 503, "service_unavailable")["message"]
    assert await history(client, user.api_key) == []


async def test_webhook_without_a_secret_configured_is_503(
    client: httpx2.AsyncClient, services: Services, settings: Settings
) -> None:
    reconfigure(services, settings, stripe_webhook_secret=None)
    response = await client.post(
        "/v1/topup/stripe/webhook", content=b"{}", headers={"Stripe-Signature": "t=1,v1=0"}
    )
    assert "BATCHIN_STRIPE_WEBHOOK_SECRET" in assert_error(response, 503, "service_unavailable")["message"]


async def test_a_stripe_api_error_is_503_not_500_and_leaves_no_pending_row(
    client: httpx2.AsyncClient,
    services: Services,
    settings: Settings,
    make_user: MakeUser,
    fake_stripe: FakeStripe,
) -> None:
    reconfigure(services, settings, stripe_secret_key="sk_test_revoked_key_0000")
    user = await make_user(credit_cents=0)

    response = await client.post(
        "/v1/topup/stripe/checkout", json={"amount_cents": 5000}, headers=bearer(user.api_key)
    )

    error = assert_error(response, 503, "service_unavailable")
    assert "sk_test" not in error["message"]
    assert [r.path for r in fake_stripe.requests] == ["/v1/checkout/sessions"]
    assert fake_stripe.sessions == {}
    assert await history(client, user.api_key) == []


async def test_history_is_a_bare_array_of_the_callers_topups_newest_first(
    client: httpx2.AsyncClient, make_user: MakeUser, fake_stripe: FakeStripe
) -> None:
    alice, bob = await make_user(credit_cents=300), await make_user(credit_cents=0)
    first = await start_checkout(client, alice.api_key, 1000)
    second = await start_checkout(client, alice.api_key, 2000)

    entries = await history(client, alice.api_key)

    assert [e["reference_id"] for e in entries] == [
        second["session_id"],
        first["session_id"],
        f"initial:{alice.id}",
    ]
    assert set(entries[0]) == {
        "id",
        "amount_cents",
        "currency",
        "source",
        "reference_id",
        "status",
        "created_at",
        "completed_at",
    }
    assert await history(client, bob.api_key) == []


async def test_usdc_chains_list_the_configured_deposit_addresses(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    response = await client.get("/v1/topup/usdc/chains", headers=bearer(user.api_key))
    assert response.status_code == 200
    assert response.json() == {"chains": CHAINS}


async def test_usdc_chains_are_an_empty_list_when_none_are_configured(
    client: httpx2.AsyncClient, services: Services, settings: Settings, make_user: MakeUser
) -> None:
    reconfigure(services, settings, usdc_chains=[])
    user = await make_user()
    response = await client.get("/v1/topup/usdc/chains", headers=bearer(user.api_key))
    assert response.status_code == 200
    assert response.json() == {"chains": []}


async def test_a_cny_account_checks_out_in_cny_with_alipay_and_wechat_pay(
    client: httpx2.AsyncClient, make_user: MakeUser, fake_stripe: FakeStripe
) -> None:
    user = await make_user(credit_cents=0, currency="CNY")

    created = await start_checkout(client, user.api_key, 5000)

    assert (created["currency"], created["payment_method_types"]) == ("CNY", ["alipay", "wechat_pay"])
    session = fake_stripe.sessions[created["session_id"]]
    assert (session["currency"], session["amount_total"]) == ("cny", 5000)
    assert session["payment_method_types"] == ["alipay", "wechat_pay"]
    assert session["payment_method_options"] == {"wechat_pay": {"client": "web"}}
    delivered = await post_event(client, fake_stripe.complete(created["session_id"], "alipay"))
    assert delivered.json() == {"received": True, "credited": True}
    me = (await client.get("/v1/users/me", headers=bearer(user.api_key))).json()
    assert (me["credit_balance_cents"], me["currency"]) == (5000, "CNY")
    [completed] = await history(client, user.api_key)
    assert (completed["amount_cents"], completed["currency"], completed["status"]) == (
        5000,
        "CNY",
        "completed",
    )


async def test_a_usd_account_is_offered_cards_only(
    client: httpx2.AsyncClient, make_user: MakeUser, fake_stripe: FakeStripe
) -> None:
    user = await make_user(credit_cents=0)

    created = await start_checkout(client, user.api_key, 5000)

    session = fake_stripe.sessions[created["session_id"]]
    assert (session["currency"], session["payment_method_types"]) == ("usd", ["card"])
    assert session["payment_method_options"] == {}
    with pytest.raises(ValueError, match="does not offer wechat_pay"):
        fake_stripe.complete(created["session_id"], "wechat_pay")


async def test_a_session_paid_in_another_currency_than_its_account_is_not_credited(
    client: httpx2.AsyncClient, make_user: MakeUser, fake_stripe: FakeStripe
) -> None:
    user = await make_user(credit_cents=0, currency="CNY")
    created = await start_checkout(client, user.api_key, 5000)
    session = {**fake_stripe.sessions[created["session_id"]], "currency": "usd", "payment_status": "paid"}

    delivered = await post_event(client, fake_stripe.event(session, "checkout.session.completed"))

    assert delivered.json() == {"received": True, "credited": False}
    assert await balance(client, user.api_key) == 0
    [pending] = await history(client, user.api_key)
    assert pending["status"] == "pending"
