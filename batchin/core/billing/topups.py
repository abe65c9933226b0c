"""Top-ups: Stripe Checkout (real sessions through the official SDK), USDC deposit addresses from
configuration, operator credits, and the history of all three.

A Stripe top-up is a `pending` row created with the checkout session; the signed
`checkout.session.completed` webhook flips it to `completed` and credits the balance in the same
transaction. The flip is a conditional UPDATE (`status = 'pending'`), so of any number of redelivered
or concurrent deliveries exactly one sees the row pending and credits; the others change nothing.

Every amount is in the account's currency (its minor units: cents or fen), fixed when the account
was opened: a USD account's checkout charges USD by card, a CNY account's charges CNY through Alipay
or WeChat Pay, and a session paid in any other currency than its account's is never credited.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import stripe
from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from batchin.config import Settings
from batchin.core.billing.money import cents_to_units
from batchin.core.clock import isoformat, utcnow
from batchin.errors import InvalidRequest, ServiceUnavailable
from batchin.protocol.currency import Currency, currency_of
from batchin.protocol.topup import (
    CheckoutRequest,
    CheckoutResponse,
    StripeCheckoutSession,
    StripeEvent,
    TopupRecord,
    UsdcChainInfo,
    UsdcChainsResponse,
    WebhookAck,
)
from batchin.store.database import Database
from batchin.store.tables import topups, users
from batchin.store.upsert import upsert_insert

log = logging.getLogger("batchin.topups")

_PAID_EVENTS = {"checkout.session.completed", "checkout.session.async_payment_succeeded"}
_PAID_STATUSES = {"paid", "no_payment_required"}
# A session that can no longer be paid closes its pending row, so history does not show it pending forever.
_CLOSING_EVENTS = {"checkout.session.expired": "expired", "checkout.session.async_payment_failed": "failed"}
_SIGNATURE_TOLERANCE_SECONDS = 300
# What each currency's checkout offers (Stripe supports Alipay and WeChat Pay for CNY; WeChat Pay in
# Checkout needs its client named: "web", where Stripe shows the QR code to scan).
_PAYMENT_METHODS: dict[Currency, tuple[str, ...]] = {"USD": ("card",), "CNY": ("alipay", "wechat_pay")}
_PAYMENT_METHOD_OPTIONS: dict[Currency, dict[str, Any]] = {"CNY": {"wechat_pay": {"client": "web"}}}
# Stripe answers in well under a second; a checkout request should not hang on it for the SDK's 80 s.
_STRIPE_TIMEOUT_SECONDS = 20.0
_STRIPE_RETRIES = 2


class TopupService:
    def __init__(self, database: Database, settings: Settings) -> None:
        self._db = database
        self._settings = settings
        self._insert = upsert_insert(database.dialect)
        self._stripe: stripe.StripeClient | None = None
        self._stripe_http: _HTTPXClient | None = None

    async def history(self, user_id: str) -> list[TopupRecord]:
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    select(topups, users.c.currency)
                    .join(users, users.c.id == topups.c.user_id)
                    .where(topups.c.user_id == user_id)
                    .order_by(topups.c.created_at.desc(), topups.c.id)
                )
            ).all()
        return [_record(r) for r in rows]

    def usdc_chains(self) -> UsdcChainsResponse:
        return UsdcChainsResponse(
            chains=[UsdcChainInfo(**chain.model_dump()) for chain in self._settings.usdc_chains]
        )

    async def credit(
        self, user_id: str, amount_cents: int, *, source: str = "admin", note: str | None = None
    ) -> TopupRecord:
        """An operator's credit (CLI `users credit`)."""
        if amount_cents <= 0:
            raise InvalidRequest("The amount must be a positive number of cents.", param="amount_cents")
        now = utcnow()
        row: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "user_id": user_id,
            "amount_cents": amount_cents,
            "source": source,
            "reference_id": f"{source}:{uuid.uuid4()}",
            "status": "completed",
            "note": note,
            "created_at": now,
            "completed_at": now,
        }
        async with self._db.write() as conn:
            currency = await _add_balance(conn, user_id, amount_cents)
            if currency is None:
                raise InvalidRequest("User not found.", param="user_id")
            await conn.execute(topups.insert().values(**row))
        return TopupRecord(
            id=row["id"],
            amount_cents=amount_cents,
            currency=currency,
            source=source,
            reference_id=row["reference_id"],
            status="completed",
            created_at=isoformat(now) or "",
            completed_at=isoformat(now),
        )

    async def create_checkout(
        self, user_id: str, request: CheckoutRequest, *, return_base: str | None = None
    ) -> CheckoutResponse:
        """A Stripe Checkout session; Stripe sends the browser back to `return_base` (the entry the
        caller came by; default the configured base URL) at /topup/success or /topup/cancelled."""
        low, high = self._settings.topup_min_cents, self._settings.topup_max_cents
        if not low <= request.amount_cents <= high:
            raise InvalidRequest(f"amount_cents must be between {low} and {high}.", param="amount_cents")
        client = self._stripe_client()
        async with self._db.read() as conn:
            found = (await conn.execute(select(users.c.currency).where(users.c.id == user_id))).scalar()
        if found is None:
            raise InvalidRequest("User not found.", param="user_id")
        currency = currency_of(found)
        topup_id = str(uuid.uuid4())
        try:
            session: Any = await client.v1.checkout.sessions.create_async(
                params=self._checkout_params(user_id, topup_id, request.amount_cents, currency, return_base),
                # One key per top-up: the SDK's own retries can never open a second session for it.
                options={"idempotency_key": f"batchin-topup-{topup_id}"},
            )
        except stripe.StripeError as exc:
            log.warning(
                "stripe checkout failed: %s (http %s, code %s, request %s)",
                type(exc).__name__,
                exc.http_status,
                exc.code,
                exc.request_id,
            )
            raise ServiceUnavailable(
                "The payment provider refused or could not be reached; retry later."
            ) from None
        if not isinstance(session.id, str) or not isinstance(session.url, str):
            raise ServiceUnavailable("The payment provider returned a session without a payment URL.")
        async with self._db.write() as conn:
            await conn.execute(
                topups.insert().values(
                    id=topup_id,
                    user_id=user_id,
                    amount_cents=request.amount_cents,
                    source="stripe",
                    reference_id=session.id,
                    status="pending",
                    created_at=utcnow(),
                )
            )
        return CheckoutResponse(
            checkout_url=session.url,
            session_id=session.id,
            currency=currency,
            payment_method_types=list(_PAYMENT_METHODS[currency]),
        )

    def _checkout_params(
        self, user_id: str, topup_id: str, amount_cents: int, currency: Currency, return_base: str | None
    ) -> Any:
        base = (return_base or self._settings.public_base_url).rstrip("/")
        options = _PAYMENT_METHOD_OPTIONS.get(currency)
        return {
            "mode": "payment",
            "payment_method_types": list(_PAYMENT_METHODS[currency]),
            **({"payment_method_options": options} if options else {}),
            "client_reference_id": user_id,
            "metadata": {
                "batchin_user_id": user_id,
                "batchin_topup_id": topup_id,
                "amount_cents": str(amount_cents),
            },
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency.lower(),  # Stripe's codes are lower case
                        "unit_amount": amount_cents,
                        "product_data": {"name": "BatchIn credit"},
                    },
                }
            ],
            "success_url": f"{base}/topup/success?session_id={{CHECKOUT_SESSION_ID}}",
            "cancel_url": f"{base}/topup/cancelled",
        }

    async def handle_stripe_webhook(self, payload: bytes, signature: str | None) -> WebhookAck:
        event = self._verified_event(payload, signature)
        closing_status = _CLOSING_EVENTS.get(event.type)
        if event.type not in _PAID_EVENTS and closing_status is None:
            return WebhookAck(received=True, credited=False)
        try:
            session = StripeCheckoutSession.model_validate(event.data.object)
        except ValidationError:
            raise InvalidRequest(
                "The event does not carry a Checkout Session.", param="data.object"
            ) from None
        if closing_status is not None:
            await self._close_session(session.id, closing_status)
            return WebhookAck(received=True, credited=False)
        if session.payment_status not in _PAID_STATUSES:
            # Delayed payment methods: `async_payment_succeeded` follows when the money arrives.
            return WebhookAck(received=True, credited=False)
        return WebhookAck(received=True, credited=await self._complete_session(session))

    def _verified_event(self, payload: bytes, signature: str | None) -> StripeEvent:
        secret = self._settings.stripe_webhook_secret
        if not secret:
            raise ServiceUnavailable("Stripe webhooks are not configured: set BATCHIN_STRIPE_WEBHOOK_SECRET.")
        if not signature:
            raise InvalidRequest("Missing Stripe-Signature header.", param="Stripe-Signature")
        try:
            # The SDK's own check (what `Webhook.construct_event` runs): HMAC over "t.payload", then age.
            stripe.WebhookSignature.verify_header(payload, signature, secret, _SIGNATURE_TOLERANCE_SECONDS)
        except (stripe.SignatureVerificationError, UnicodeDecodeError):
            raise InvalidRequest("Invalid Stripe signature.", param="Stripe-Signature") from None
        try:
            # Parsed into our own model rather than the SDK's Event: a body of an unexpected shape is
            # then a 400 here, not an AttributeError somewhere in the SDK.
            return StripeEvent.model_validate_json(payload)
        except ValidationError:
            raise InvalidRequest("The webhook body is not a Stripe event.") from None

    async def _complete_session(self, session: StripeCheckoutSession) -> bool:
        now = utcnow()
        paid_in = (session.currency or "").upper()
        # Only an account whose currency the session was paid in: a session paid in another is left
        # pending (and logged) for an operator, like a total that differs from what we asked.
        in_its_currency = (
            select(users.c.id).where(users.c.id == topups.c.user_id, users.c.currency == paid_in).exists()
        )
        async with self._db.write() as conn:
            completed = (
                await conn.execute(
                    update(topups)
                    .where(
                        topups.c.source == "stripe",
                        topups.c.reference_id == session.id,
                        topups.c.status == "pending",
                        # A total that differs from what we asked Stripe to charge is left for an operator.
                        topups.c.amount_cents == session.amount_total,
                        in_its_currency,
                    )
                    .values(status="completed", completed_at=now)
                    .returning(topups.c.user_id, topups.c.amount_cents)
                )
            ).first()
            if completed is not None:
                return await _add_balance(conn, completed.user_id, completed.amount_cents) is not None
            if await self._credit_foreign_session(conn, session):
                return True
        log.info("stripe session %s: nothing to credit (already credited or not ours)", session.id)
        return False

    async def _credit_foreign_session(self, conn: AsyncConnection, session: StripeCheckoutSession) -> bool:
        """A session created outside this server (e.g. a payment link) whose metadata names one of our
        users. The insert's unique (source, reference_id) makes it once-only like the pending path."""
        user_id = (session.metadata or {}).get("batchin_user_id")
        amount = session.amount_total
        if not user_id or amount is None or amount <= 0:
            return False
        owner = (await conn.execute(select(users.c.currency).where(users.c.id == user_id))).first()
        if owner is None:
            log.error("stripe session %s names unknown user %s; not credited", session.id, user_id)
            return False
        if (session.currency or "").upper() != owner.currency:
            log.error(
                "stripe session %s paid in %r for a %s account; not credited",
                session.id,
                session.currency,
                owner.currency,
            )
            return False
        now = utcnow()
        inserted = (
            await conn.execute(
                self._insert(topups)
                .values(
                    id=str(uuid.uuid4()),
                    user_id=user_id,
                    amount_cents=amount,
                    source="stripe",
                    reference_id=session.id,
                    status="completed",
                    created_at=now,
                    completed_at=now,
                )
                .on_conflict_do_nothing(index_elements=[topups.c.source, topups.c.reference_id])
                .returning(topups.c.id)
            )
        ).first()
        return inserted is not None and await _add_balance(conn, user_id, amount) is not None

    async def _close_session(self, session_id: str, status: str) -> None:
        async with self._db.write() as conn:
            await conn.execute(
                update(topups)
                .where(
                    topups.c.source == "stripe",
                    topups.c.reference_id == session_id,
                    topups.c.status == "pending",
                )
                .values(status=status)
            )

    def _stripe_client(self) -> stripe.StripeClient:
        if not self._settings.stripe_secret_key:
            raise ServiceUnavailable("Stripe top-ups are not configured: set BATCHIN_STRIPE_SECRET_KEY.")
        if self._stripe is None:
            base_addresses: Any = {}
            if self._settings.stripe_api_base:
                base_addresses["api"] = self._settings.stripe_api_base
            # The SDK's async calls go through httpx; an explicit client is one we can close at shutdown.
            self._stripe_http = _HTTPXClient(timeout=_STRIPE_TIMEOUT_SECONDS)
            self._stripe = stripe.StripeClient(
                self._settings.stripe_secret_key,
                base_addresses=base_addresses,
                max_network_retries=_STRIPE_RETRIES,
                http_client=self._stripe_http,
            )
        return self._stripe

    async def close(self) -> None:
        if self._stripe_http is not None:
            await self._stripe_http.close_async()  # type: ignore[no-untyped-call]  # SDK leaves it untyped
            self._stripe_http = None
            self._stripe = None


class _HTTPXClient(stripe.HTTPXClient):
    """The SDK's httpx transport, sending the form body as `content=`: stripe 16.1 passes the encoded
    string as `data=`, which httpx 0.28 deprecates with a warning on every call (an error under tests)."""

    def _get_request_args_kwargs(self, method: str, url: str, headers: Any, post_data: Any) -> Any:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        if isinstance(kwargs.get("data"), str | bytes):
            kwargs["content"] = kwargs.pop("data")
        return [args, kwargs]


async def _add_balance(conn: AsyncConnection, user_id: str, amount_cents: int) -> Currency | None:
    """Credit `amount_cents` (minor units of the account's currency); the currency, None for no user."""
    result = await conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(balance_units=users.c.balance_units + cents_to_units(amount_cents))
        .returning(users.c.currency)
    )
    row = result.first()
    return None if row is None else currency_of(row.currency)


def _record(r: Any) -> TopupRecord:
    return TopupRecord(
        id=r.id,
        amount_cents=r.amount_cents,
        currency=currency_of(r.currency),
        source=r.source,
        reference_id=r.reference_id,
        status=r.status,
        created_at=isoformat(r.created_at) or "",
        completed_at=isoformat(r.completed_at),
    )
