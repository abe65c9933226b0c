"""Top-ups: Stripe Checkout (real sessions through the official SDK), USDC deposit addresses from
configuration, operator credits, and the history of all three.

A Stripe top-up is a `pending` row created with the checkout session; the signed
`checkout.session.completed` webhook flips it to `completed` and credits the balance in the same
transaction, guarded by the status, so a redelivered event never credits twice.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import stripe
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from batchin.config import Settings
from batchin.core.clock import isoformat, utcnow
from batchin.core.money import cents_to_units
from batchin.errors import InvalidRequest, ServiceUnavailable
from batchin.protocol.topup import (
    CheckoutRequest,
    CheckoutResponse,
    TopupRecord,
    UsdcChainInfo,
    UsdcChainsResponse,
    WebhookAck,
)
from batchin.store.database import Database
from batchin.store.tables import topups, users

log = logging.getLogger("batchin.topups")

_PAID_EVENTS = {"checkout.session.completed", "checkout.session.async_payment_succeeded"}


class TopupService:
    def __init__(self, database: Database, settings: Settings) -> None:
        self._db = database
        self._settings = settings
        self._insert = postgresql.insert if database.dialect == "postgresql" else sqlite.insert
        self._stripe: stripe.StripeClient | None = None

    async def history(self, user_id: str) -> list[TopupRecord]:
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    select(topups)
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
        row = {
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
            await conn.execute(topups.insert().values(**row))
            await self._add_balance(conn, user_id, amount_cents)
        return _record(_Row(row))

    async def create_checkout(self, user_id: str, request: CheckoutRequest) -> CheckoutResponse:
        low, high = self._settings.topup_min_cents, self._settings.topup_max_cents
        if not low <= request.amount_cents <= high:
            raise InvalidRequest(f"amount_cents must be between {low} and {high}.", param="amount_cents")
        client = self._stripe_client()
        base = self._settings.public_base_url.rstrip("/")
        try:
            session: Any = await client.v1.checkout.sessions.create_async(
                params={
                    "mode": "payment",
                    "client_reference_id": user_id,
                    "metadata": {"batchin_user_id": user_id, "amount_cents": str(request.amount_cents)},
                    "line_items": [
                        {
                            "quantity": 1,
                            "price_data": {
                                "currency": self._settings.stripe_currency,
                                "unit_amount": request.amount_cents,
                                "product_data": {"name": "BatchIn credit"},
                            },
                        }
                    ],
                    "success_url": f"{base}/topup/success?session_id={{CHECKOUT_SESSION_ID}}",
                    "cancel_url": f"{base}/topup/cancelled",
                }
            )
        except stripe.StripeError as exc:
            log.warning("stripe checkout failed: %s", type(exc).__name__)
            raise ServiceUnavailable(
                "The payment provider refused or could not be reached; retry later."
            ) from None
        async with self._db.write() as conn:
            await conn.execute(
                topups.insert().values(
                    id=str(uuid.uuid4()),
                    user_id=user_id,
                    amount_cents=request.amount_cents,
                    source="stripe",
                    reference_id=session.id,
                    status="pending",
                    created_at=utcnow(),
                )
            )
        return CheckoutResponse(checkout_url=session.url, session_id=session.id)

    async def handle_stripe_webhook(self, payload: bytes, signature: str | None) -> WebhookAck:
        secret = self._settings.stripe_webhook_secret
        if not secret:
            raise ServiceUnavailable("Stripe webhooks are not configured: set BATCHIN_STRIPE_WEBHOOK_SECRET.")
        try:
            event: Any = stripe.Webhook.construct_event(payload, signature, secret, tolerance=300)
        except (stripe.SignatureVerificationError, ValueError):
            raise InvalidRequest("Invalid Stripe signature.", param="Stripe-Signature") from None
        if event["type"] not in _PAID_EVENTS:
            return WebhookAck(received=True, credited=False)
        session = event["data"]["object"]
        if session.get("payment_status") not in ("paid", "no_payment_required"):
            return WebhookAck(received=True, credited=False)
        return WebhookAck(received=True, credited=await self._complete_session(session))

    async def _complete_session(self, session: Any) -> bool:
        metadata = session.get("metadata") or {}
        now = utcnow()
        async with self._db.write() as conn:
            completed = (
                await conn.execute(
                    update(topups)
                    .where(
                        topups.c.source == "stripe",
                        topups.c.reference_id == session["id"],
                        topups.c.status == "pending",
                    )
                    .values(status="completed", completed_at=now)
                    .returning(topups.c.user_id, topups.c.amount_cents)
                )
            ).first()
            if completed is not None:
                await self._add_balance(conn, completed.user_id, completed.amount_cents)
                return True
            # A session created outside this server (e.g. a payment link) that names one of our users.
            user_id = metadata.get("batchin_user_id")
            amount = session.get("amount_total")
            if not user_id or not isinstance(amount, int) or amount <= 0:
                return False
            inserted = (
                await conn.execute(
                    self._insert(topups)
                    .values(
                        id=str(uuid.uuid4()),
                        user_id=user_id,
                        amount_cents=amount,
                        source="stripe",
                        reference_id=session["id"],
                        status="completed",
                        created_at=now,
                        completed_at=now,
                    )
                    .on_conflict_do_nothing(index_elements=[topups.c.source, topups.c.reference_id])
                    .returning(topups.c.id)
                )
            ).first()
            if inserted is None:
                return False
            await self._add_balance(conn, user_id, amount)
            return True

    async def _add_balance(self, conn: Any, user_id: str, amount_cents: int) -> None:
        result = await conn.execute(
            update(users)
            .where(users.c.id == user_id)
            .values(balance_units=users.c.balance_units + cents_to_units(amount_cents))
            .returning(users.c.id)
        )
        if result.first() is None:
            raise InvalidRequest("User not found.", param="user_id")

    def _stripe_client(self) -> stripe.StripeClient:
        if not self._settings.stripe_secret_key:
            raise ServiceUnavailable("Stripe top-ups are not configured: set BATCHIN_STRIPE_SECRET_KEY.")
        if self._stripe is None:
            kwargs: dict[str, Any] = {}
            if self._settings.stripe_api_base:
                kwargs["base_addresses"] = {"api": self._settings.stripe_api_base}
            self._stripe = stripe.StripeClient(
                self._settings.stripe_secret_key, max_network_retries=2, **kwargs
            )
        return self._stripe


class _Row:
    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def _record(r: Any) -> TopupRecord:
    return TopupRecord(
        id=r.id,
        amount_cents=r.amount_cents,
        source=r.source,
        reference_id=r.reference_id,
        status=r.status,
        created_at=isoformat(r.created_at) or "",
        completed_at=isoformat(r.completed_at),
    )
