"""Top-ups in core: real Checkout sessions through the SDK against the fake Stripe server, and a
webhook that credits each paid session exactly once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from batchin.config import Settings, UsdcChain
from batchin.core.billing.money import cents_to_units
from batchin.core.billing.topups import TopupService
from batchin.errors import InvalidRequest, ServiceUnavailable
from batchin.protocol.topup import CheckoutRequest, WebhookAck
from batchin.services import Services
from batchin.store.tables import topups, users
from tests.conftest import MakeUser
from tests.fakes.stripe_server import FakeStripe, running_fake_stripe, signature_header

SECRET_KEY = "sk_test_batchin_fake_0123456789"
WEBHOOK_SECRET = "whsec_batchin_test_secret"


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
        }
    )


@pytest.fixture(autouse=True)
async def _close_stripe_client(services: Services) -> AsyncIterator[None]:
    yield
    await services.topups.close()


async def deliver(
    services: Services, event: dict[str, Any], *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None
) -> WebhookAck:
    payload = json.dumps(event).encode()
    return await services.topups.handle_stripe_webhook(payload, signature_header(payload, secret, timestamp))


async def balance_cents(services: Services, user_id: str) -> float:
    async with services.database.read() as conn:
        units = (await conn.execute(select(users.c.balance_units).where(users.c.id == user_id))).scalar_one()
    return int(units) / cents_to_units(1)


async def checkout(services: Services, user_id: str, amount_cents: int = 5000) -> str:
    response = await services.topups.create_checkout(user_id, CheckoutRequest(amount_cents=amount_cents))
    return response.session_id


async def test_checkout_creates_a_stripe_session_and_a_pending_row(
    services: Services, make_user: MakeUser, fake_stripe: FakeStripe
) -> None:
    user = await make_user(credit_cents=0)
    response = await services.topups.create_checkout(user.id, CheckoutRequest(amount_cents=5000))

    session = fake_stripe.sessions[response.session_id]
    assert response.session_id.startswith("cs_test_")
    assert response.checkout_url == session["url"]
    assert session["amount_total"] == 5000
    assert session["currency"] == "usd"
    assert session["client_reference_id"] == user.id
    assert session["metadata"]["batchin_user_id"] == user.id
    assert session["payment_status"] == "unpaid"
    [history] = await services.topups.history(user.id)
    assert (history.source, history.status, history.amount_cents) == ("stripe", "pending", 5000)
    assert history.reference_id == response.session_id
    assert history.completed_at is None
    assert session["metadata"]["batchin_topup_id"] == history.id
    [request] = fake_stripe.requests
    assert request.headers["idempotency-key"] == f"batchin-topup-{history.id}"
    assert request.headers["authorization"] == f"Bearer {SECRET_KEY}"


async def test_paid_webhook_completes_the_row_and_credits_the_amount(
    services: Services, make_user: MakeUser, fake_stripe: FakeStripe
) -> None:
    user = await make_user(credit_cents=100)
    session_id = await checkout(services, user.id, 2500)

    ack = await deliver(services, fake_stripe.paid_event(session_id))

    assert ack == WebhookAck(received=True, credited=True)
    assert await balance_cents(services, user.id) == 2600
    [row] = [r for r in await services.topups.history(user.id) if r.source == "stripe"]
    assert row.status == "completed"
    assert row.completed_at is not None


async def test_redelivered_event_credits_once(
    services: Services, make_user: MakeUser, fake_stripe: FakeStripe
) -> None:
    user = await make_user(credit_cents=0)
    event = fake_stripe.paid_event(await checkout(services, user.id, 1000))

    acks = [await deliver(services, event) for _ in range(3)]

    assert [a.credited for a in acks] == [True, False, False]
    assert await balance_cents(services, user.id) == 1000


async def test_ten_concurrent_deliveries_credit_once(
    services: Services, make_user: MakeUser, fake_stripe: FakeStripe
) -> None:
    user = await make_user(credit_cents=0)
    event = fake_stripe.paid_event(await checkout(services, user.id, 1234))

    acks = await asyncio.gather(*(deliver(services, event) for _ in range(10)))

    assert sorted(a.credited for a in acks) == [False] * 9 + [True]
    assert await balance_cents(services, user.id) == 1234


async def test_both_paid_event_types_for_one_session_credit_once(
    services: Services, make_user: MakeUser, fake_stripe: FakeStripe
) -> None:
    user = await make_user(credit_cents=0)
    session_id = await checkout(services, user.id, 700)
    completed = fake_stripe.paid_event(session_id)
    succeeded = fake_stripe.paid_event(session_id, "checkout.session.async_payment_succeeded")

    acks = await asyncio.gather(deliver(services, completed), deliver(services, succeeded))

    assert sorted(a.credited for a in acks) == [False, True]
    assert await balance_cents(services, user.id) == 700


@pytest.mark.parametrize(
    ("secret", "age_seconds"),
    [("whsec_someone_else", 0), (WEBHOOK_SECRET, 301)],
    ids=["wrong-secret", "stale-timestamp"],
)
async def test_badly_signed_event_is_refused_and_credits_nothing(
    services: Services, make_user: MakeUser, fake_stripe: FakeStripe, secret: str, age_seconds: int
) -> None:
    user = await make_user(credit_cents=0)
    event = fake_stripe.paid_event(await checkout(services, user.id))

    with pytest.raises(InvalidRequest) as refused:
        await deliver(services, event, secret=secret, timestamp=int(time.time()) - age_seconds)

    assert refused.value.param == "Stripe-Signature"
    assert await balance_cents(services, user.id) == 0
    assert [r.status for r in await services.topups.history(user.id)] == ["pending"]


@pytest.mark.parametrize("header", [None, "", "garbage", "t=notanumber,v1=abc", "t=1"])
async def test_unsigned_or_malformed_signature_is_refused(
    services: Services, make_user: MakeUser, fake_stripe: FakeStripe, header: str | None
) -> None:
    user = await make_user(credit_cents=0)
    payload = json.dumps(fake_stripe.paid_event(await checkout(services, user.id))).encode()

    with pytest.raises(InvalidRequest) as refused:
        await services.topups.handle_stripe_webhook(payload, header)

    assert refused.value.param == "Stripe-Signature"
    assert await balance_cents(services, user.id) == 0


async def test_a_body_changed_after_signing_is_refused(
    services: Services, make_user: MakeUser, fake_stripe: FakeStripe
) -> None:
    user = await make_user(credit_cents=0)
    signed = json.dumps(fake_stripe.paid_event(await checkout(services, user.id, 100))).encode()
    tampered = signed.replace(b'"amount_total": 100', b'"amount_total": 999999')
    assert tampered != signed

    with pytest.raises(InvalidRequest):
        await services.topups.handle_stripe_webhook(tampered, signature_header(signed, WEBHOOK_SECRET))

    assert await balance_cents(services, user.id) == 0


@pytest.mark.parametrize("body", [b"[]", b"{}", b'{"id": "evt_1", "type": "x"}', b"\xff\xfe"])
async def test_a_signed_body_that_is_not_an_event_is_refused(services: Services, body: bytes) -> None:
    header = signature_header(body, WEBHOOK_SECRET) if body.isascii() else f"t={int(time.time())},v1=00"
    with pytest.raises(InvalidRequest):
        await services.topups.handle_stripe_webhook(body, header)


async def test_unpaid_completion_waits_for_async_payment(
    services: Services, make_user: MakeUser, fake_stripe: FakeStripe
) -> None:
    user = await make_user(credit_cents=0)
    session_id = await checkout(services, user.id, 900)
    unpaid = fake_stripe.event(
        {**fake_stripe.sessions[session_id], "status": "complete"}, "checkout.session.completed"
    )

    assert (await deliver(services, unpaid)).credited is False
    assert await balance_cents(services, user.id) == 0
    later = fake_stripe.paid_event(session_id, "checkout.session.async_payment_succeeded")
    assert (await deliver(services, later)).credited is True
    assert await balance_cents(services, user.id) == 900


@pytest.mark.parametrize(
    ("event_type", "status"),
    [("checkout.session.expired", "expired"), ("checkout.session.async_payment_failed", "failed")],
)
async def test_a_session_that_cannot_be_paid_closes_its_row(
    services: Services, make_user: MakeUser, fake_stripe: FakeStripe, event_type: str, status: str
) -> None:
    user = await make_user(credit_cents=0)
    session_id = await checkout(services, user.id)

    ack = await deliver(services, fake_stripe.event(fake_stripe.sessions[session_id], event_type))

    assert ack.credited is False
    assert [r.status for r in await services.topups.history(user.id)] == [status]
    assert (await deliver(services, fake_stripe.paid_event(session_id))).credited is False
    assert await balance_cents(services, user.id) == 0


@pytest.mark.parametrize(
    "change", [{"amount_total": 4999}, {"currency": "eur"}], ids=["other-amount", "other-currency"]
)
async def test_a_paid_session_that_differs_from_the_order_is_not_credited(
    services: Services, make_user: MakeUser, fake_stripe: FakeStripe, change: dict[str, Any]
) -> None:
    user = await make_user(credit_cents=0)
    session_id = await checkout(services, user.id, 5000)
    paid = {**fake_stripe.sessions[session_id], "payment_status": "paid", **change}

    assert (await deliver(services, fake_stripe.event(paid, "checkout.session.completed"))).credited is False
    assert await balance_cents(services, user.id) == 0
    assert [r.status for r in await services.topups.history(user.id)] == ["pending"]


def foreign_session(user_id: str, amount: int) -> dict[str, Any]:
    """A session made outside BatchIn (a payment link) whose metadata names a user."""
    return {
        "id": "cs_test_paymentlink_" + user_id[:8],
        "object": "checkout.session",
        "amount_total": amount,
        "currency": "usd",
        "metadata": {"batchin_user_id": user_id},
        "payment_status": "paid",
        "status": "complete",
    }


async def test_a_paid_foreign_session_naming_a_user_is_credited_once(
    services: Services, make_user: MakeUser, fake_stripe: FakeStripe
) -> None:
    user = await make_user(credit_cents=0)
    event = fake_stripe.event(foreign_session(user.id, 300), "checkout.session.completed")

    acks = await asyncio.gather(*(deliver(services, event) for _ in range(5)))

    assert sorted(a.credited for a in acks) == [False] * 4 + [True]
    assert await balance_cents(services, user.id) == 300
    [row] = await services.topups.history(user.id)
    assert (row.status, row.reference_id) == ("completed", event["data"]["object"]["id"])


async def test_a_foreign_session_naming_an_unknown_user_is_acknowledged_without_credit(
    services: Services, fake_stripe: FakeStripe
) -> None:
    event = fake_stripe.event(
        foreign_session("00000000-0000-0000-0000-000000000000", 300), "checkout.session.completed"
    )
    assert await deliver(services, event) == WebhookAck(received=True, credited=False)
    async with services.database.read() as conn:
        assert (await conn.execute(select(topups.c.id))).all() == []


async def test_other_event_types_are_acknowledged(services: Services, fake_stripe: FakeStripe) -> None:
    event = fake_stripe.event({"id": "pi_123", "object": "payment_intent"}, "payment_intent.created")
    assert await deliver(services, event) == WebhookAck(received=True, credited=False)


@pytest.mark.parametrize("amount", [99, 0, -5, 1_000_001])
async def test_amount_out_of_range_is_refused_before_stripe(
    services: Services, make_user: MakeUser, fake_stripe: FakeStripe, amount: int
) -> None:
    user = await make_user(credit_cents=0)
    with pytest.raises(InvalidRequest) as refused:
        await services.topups.create_checkout(user.id, CheckoutRequest(amount_cents=amount))
    assert refused.value.param == "amount_cents"
    assert fake_stripe.requests == []
    assert await services.topups.history(user.id) == []


async def test_a_stripe_refusal_is_unavailable_and_leaves_no_row(
    services: Services, settings: Settings, make_user: MakeUser, fake_stripe: FakeStripe
) -> None:
    user = await make_user(credit_cents=0)
    wrong_key = TopupService(
        services.database, settings.model_copy(update={"stripe_secret_key": "sk_test_wrong"})
    )
    try:
        with pytest.raises(ServiceUnavailable):
            await wrong_key.create_checkout(user.id, CheckoutRequest(amount_cents=5000))
    finally:
        await wrong_key.close()
    assert len(fake_stripe.requests) == 1  # an authentication error is not retried
    assert fake_stripe.sessions == {}
    assert await services.topups.history(user.id) == []


async def test_a_transient_stripe_failure_is_retried_with_the_same_idempotency_key(
    services: Services, make_user: MakeUser, fake_stripe: FakeStripe
) -> None:
    user = await make_user(credit_cents=0)
    fake_stripe.fail_next(500)

    session_id = await checkout(services, user.id)

    first, second = fake_stripe.requests
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert list(fake_stripe.sessions) == [session_id]
    assert len(await services.topups.history(user.id)) == 1


async def test_unconfigured_stripe_names_the_missing_setting(
    services: Services, settings: Settings, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=0)
    bare = TopupService(
        services.database,
        settings.model_copy(update={"stripe_secret_key": None, "stripe_webhook_secret": None}),
    )
    with pytest.raises(ServiceUnavailable, match="BATCHIN_STRIPE_SECRET_KEY"):
        await bare.create_checkout(user.id, CheckoutRequest(amount_cents=5000))
    with pytest.raises(ServiceUnavailable, match="BATCHIN_STRIPE_WEBHOOK_SECRET"):
        await bare.handle_stripe_webhook(b"{}", "t=1,v1=00")
    assert await bare.history(user.id) == []


async def test_history_is_the_callers_own_newest_first(
    services: Services, make_user: MakeUser, fake_stripe: FakeStripe
) -> None:
    alice, bob = await make_user(credit_cents=100), await make_user(credit_cents=0)
    first = await checkout(services, alice.id, 1000)
    second = await checkout(services, alice.id, 2000)
    await checkout(services, bob.id, 3000)

    history = await services.topups.history(alice.id)

    assert [(r.reference_id, r.amount_cents) for r in history] == [
        (second, 2000),
        (first, 1000),
        (f"initial:{alice.id}", 100),
    ]
    assert [r.amount_cents for r in await services.topups.history(bob.id)] == [3000]


async def test_operator_credit_is_recorded_and_added(services: Services, make_user: MakeUser) -> None:
    user = await make_user(credit_cents=0)
    record = await services.topups.credit(user.id, 250, note="goodwill")
    assert (record.source, record.status, record.amount_cents) == ("admin", "completed", 250)
    assert await balance_cents(services, user.id) == 250
    assert await services.topups.history(user.id) == [record]


async def test_operator_credit_to_an_unknown_user_changes_nothing(services: Services) -> None:
    with pytest.raises(InvalidRequest):
        await services.topups.credit("00000000-0000-0000-0000-000000000000", 250)
    async with services.database.read() as conn:
        assert (await conn.execute(select(topups.c.id))).all() == []


async def test_usdc_chains_come_from_configuration(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, services: Services
) -> None:
    chains = [{"chain": "ethereum", "deposit_address": "0xabc", "required_confirmations": 12}]
    monkeypatch.setenv("BATCHIN_USDC_CHAINS", json.dumps(chains))
    assert Settings().usdc_chains == [UsdcChain(**chains[0])]
    configured = TopupService(
        services.database, settings.model_copy(update={"usdc_chains": Settings().usdc_chains})
    )
    assert configured.usdc_chains().model_dump() == {"chains": chains}
    assert services.topups.usdc_chains().model_dump() == {"chains": []}


async def test_operator_credit_to_a_cny_account_is_in_fen(services: Services, make_user: MakeUser) -> None:
    user = await make_user(credit_cents=0, currency="CNY")

    record = await services.topups.credit(user.id, 1234)

    assert (record.amount_cents, record.currency) == (1234, "CNY")
    assert await balance_cents(services, user.id) == 1234
    assert [(r.amount_cents, r.currency) for r in await services.topups.history(user.id)] == [(1234, "CNY")]


async def test_a_foreign_session_in_another_currency_than_its_account_is_not_credited(
    services: Services, make_user: MakeUser, fake_stripe: FakeStripe
) -> None:
    user = await make_user(credit_cents=0, currency="CNY")
    session = {**foreign_session(user.id, 5000), "currency": "usd"}

    ack = await deliver(services, fake_stripe.event(session, "checkout.session.completed"))

    assert ack == WebhookAck(received=True, credited=False)
    assert await balance_cents(services, user.id) == 0
    assert await services.topups.history(user.id) == []


async def test_a_foreign_session_in_its_accounts_currency_is_credited(
    services: Services, make_user: MakeUser, fake_stripe: FakeStripe
) -> None:
    user = await make_user(credit_cents=0, currency="CNY")
    session = {**foreign_session(user.id, 5000), "currency": "cny"}

    ack = await deliver(services, fake_stripe.event(session, "checkout.session.completed"))

    assert ack == WebhookAck(received=True, credited=True)
    assert await balance_cents(services, user.id) == 5000
