"""Top-ups (seed: /v1/topup/*)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from batchin.protocol.common import RequestModel


class CheckoutRequest(RequestModel):
    amount_cents: int = Field(description="amount to add, in cents")


class CheckoutResponse(BaseModel):
    checkout_url: str
    session_id: str


class TopupRecord(BaseModel):
    id: str
    amount_cents: int
    source: str
    reference_id: str
    status: str
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
