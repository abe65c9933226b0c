"""Top-ups (seed: /v1/topup/*), and the part of Stripe's webhook events that crediting relies on."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from batchin.protocol.common import RequestModel
from batchin.protocol.currency import Currency


class CheckoutRequest(RequestModel):
    # Strict: "5000", 50.0 or true are refused rather than coerced into a charge the caller never typed.
    amount_cents: StrictInt = Field(
        description="amount to add, in minor units of the account's currency (cents, or fen for CNY)"
    )


class CheckoutResponse(BaseModel):
    checkout_url: str
    session_id: str
    currency: Currency = Field(description="what the checkout charges in: the account's currency")
    payment_method_types: list[str] = Field(
        description="what the checkout offers: card for USD; alipay and wechat_pay for CNY"
    )


class TopupRecord(BaseModel):
    id: str
    amount_cents: int = Field(description="in minor units of `currency` (cents, or fen for CNY)")
    currency: Currency
    source: str = Field(description="stripe | usdc | admin")
    reference_id: str = Field(description="the Stripe Checkout Session id for Stripe top-ups")
    status: str = Field(description="pending | completed | expired | failed")
    created_at: str
    completed_at: str | None


class UsdcChainInfo(BaseModel):
    chain: str
    deposit_address: str
    required_confirmations: int


class UsdcChainsResponse(BaseModel):
    chains: list[UsdcChainInfo]


class WebhookAck(BaseModel):
    received: bool
    credited: bool


class StripeCheckoutSession(BaseModel):
    """The fields of a Checkout Session object that a webhook may act on; Stripe sends many more."""

    model_config = ConfigDict(extra="ignore")

    id: str
    payment_status: str | None = None
    amount_total: int | None = None
    currency: str | None = None
    client_reference_id: str | None = None
    metadata: dict[str, str] | None = None


class StripeEventData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    object: dict[str, Any]


class StripeEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    type: str
    data: StripeEventData
