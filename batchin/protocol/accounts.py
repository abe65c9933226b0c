"""Users and API keys (seed: /v1/users/me, /v1/keys), with each key's scopes, models and regions."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, Field

from batchin.protocol.common import RequestModel
from batchin.protocol.currency import Currency

# What a key may do; docs/reference/keys.mdx maps each route and MCP tool to one of these.
Scope = Literal[
    "inference", "account:read", "keys:write", "billing", "batches", "audit:write", "prompts:write"
]
ALL_SCOPES: tuple[Scope, ...] = get_args(Scope)

ModelId = Annotated[str, Field(min_length=1, max_length=200)]
RegionName = Annotated[str, Field(min_length=1, max_length=64)]


class UserResponse(BaseModel):
    id: str
    email: str
    name: str
    credit_balance_cents: int | float = Field(
        description="balance in minor units of `currency` (cents, or fen for CNY); fractions are exact "
        "to a millionth"
    )
    currency: Currency = Field(description="the account's currency, fixed when it was opened")


class UserCreated(UserResponse):
    api_key: str = Field(description="the user's first API key; shown once")
    key_id: str


class KeyCreateRequest(RequestModel):
    name: str | None = Field(default=None, max_length=200, description="key name")
    rate_limit_rpm: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="requests per minute; default the server's default, capped at the creating key's",
    )
    monthly_budget_cents: int | None = Field(
        default=None,
        ge=0,
        le=10**13,
        description="spending cap per calendar month (UTC), in minor units of the account's currency "
        "(cents, or fen for CNY); default the creating key's",
    )
    scopes: list[Scope] | None = Field(
        default=None,
        max_length=len(ALL_SCOPES),
        description="what the key may do; default the creating key's",
    )
    models: list[ModelId] | None = Field(
        default=None,
        max_length=256,
        description="model ids the key may call, empty for all; default the creating key's",
    )
    regions: list[RegionName] | None = Field(
        default=None,
        max_length=64,
        description="entry regions the key may use (first preferred), empty for all; default the creator's",
    )


class KeyResponse(BaseModel):
    id: str
    key_prefix: str
    name: str
    rate_limit_rpm: int
    monthly_budget_cents: int | None
    scopes: list[Scope]
    models: list[str] = Field(description="model ids the key may call; empty for all")
    regions: list[str] = Field(description="entry regions the key may use, first preferred; empty for all")
    spent_this_month_cents: int | float = Field(
        description="charged (and held by calls in flight) this calendar month (UTC), against the budget"
    )
    currency: Currency = Field(description="the unit of the budget and spend: the account's currency")
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
    scopes: list[Scope]
    models: list[str] = Field(description="model ids the key may call; empty for all")
    regions: list[str] = Field(description="entry regions the key may use, first preferred; empty for all")
    currency: Currency = Field(description="the unit of the budget: the account's currency")
    created_at: str
