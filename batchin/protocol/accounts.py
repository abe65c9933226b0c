"""Users and API keys (seed: /v1/users/me, /v1/keys)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from batchin.protocol.common import RequestModel


class UserResponse(BaseModel):
    id: str
    email: str
    name: str
    credit_balance_cents: int | float = Field(description="balance in cents; fractions are exact micro-cents")


class UserCreated(UserResponse):
    api_key: str = Field(description="the user's first API key; shown once")
    key_id: str


class KeyCreateRequest(RequestModel):
    name: str | None = Field(default=None, max_length=200, description="key name")
    rate_limit_rpm: int | None = Field(default=None, ge=1, le=1_000_000, description="requests per minute")
    monthly_budget_cents: int | None = Field(
        default=None, ge=0, le=10**13, description="spending cap per calendar month (UTC), in cents"
    )


class KeyResponse(BaseModel):
    id: str
    key_prefix: str
    name: str
    rate_limit_rpm: int
    monthly_budget_cents: int | None
    is_active: bool
    created_at: str
    last_used_at: str | None


class KeyCreated(BaseModel):
    id: str
    key: str = Field(description="the secret; shown once, store it now")
    key_prefix: str
    name: str
    rate_limit_rpm: int
    monthly_budget_cents: int | None
    created_at: str
