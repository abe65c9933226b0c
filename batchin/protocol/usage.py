"""Usage logs and totals (seed: /v1/usage/*)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from batchin.protocol.currency import Currency


class UsageLog(BaseModel):
    id: str
    request_id: str
    key_id: str | None
    model: str
    endpoint: str
    input_tokens: int
    output_tokens: int
    units: float = Field(description="billed quantity in `unit` (tokens, images, audio_seconds, ...)")
    unit: str
    cost_cents: int | float = Field(description="in minor units of `currency` (cents, or fen for CNY)")
    cost_micro_cents: int = Field(
        description="exact cost; 1 cent (or fen) = 1,000,000 micro-cents (micro-fen)"
    )
    currency: Currency
    latency_ms: int
    status: str
    created_at: str


class UsageTotals(BaseModel):
    total_requests: int
    total_input_tokens: int
    total_output_tokens: int
    total_cost_cents: int | float = Field(description="in minor units of `currency` (cents, or fen for CNY)")
    total_cost_micro_cents: int
    currency: Currency


class UsageSummary(UsageTotals):
    storage_bytes: int = Field(
        description="bytes of the user's stored files (uploads, generated media, batch results)"
    )
    storage_quota_bytes: int | None = Field(
        description="the most those files may hold (BATCHIN_STORAGE_QUOTA_BYTES); null: no limit"
    )


class ModelUsage(UsageTotals):
    model: str
