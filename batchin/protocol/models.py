"""The public model list (/v1/models)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from batchin.protocol.currency import Currency


class ModelPricing(BaseModel):
    """In major units of `currency` (dollars or yuan). Text: per 1M tokens (`std_*` as the seed
    names them, `batch_*` after the batch discount); other kinds: per image, per audio second or
    per video second."""

    std_input: float | None = None
    std_output: float | None = None
    batch_input: float | None = None
    batch_output: float | None = None
    per_image: float | None = None
    per_audio_second: float | None = None
    per_video_second: float | None = None
    batch_discount: float = 0.0
    currency: Currency = "USD"


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str
    kind: list[str]
    status: str = Field(description="always_on | on_demand | loading | unavailable, computed live")
    status_reason: str | None = None
    context_length: int | None
    pricing: ModelPricing = Field(
        description="what the caller pays: in the account's currency with a key; without one, in "
        "the currency of the entry the request came in by (USD global, CNY China)"
    )
    prices: list[ModelPricing] = Field(
        default_factory=list,
        description="the price in every currency the caller may pay in: with a key, the account's "
        "currency only; without one, every currency the model is priced in (USD, CNY)",
    )
    licence: str
    description: str
    regions: list[str]
    capabilities: list[str] = Field(
        default_factory=list,
        description="Text models: what they do beyond plain sampling, of json_schema (response_format), "
        "tools, logprobs, vision, penalties (presence/frequency_penalty, logit_bias)",
    )
    alias_of: str | None = Field(
        default=None,
        description="Set on an alias: the id of the model it calls (the one usage and responses name)",
    )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
