"""Webhook signing secrets (`/v1/webhooks/secret`) and delivery attempts as shown on a batch."""

from __future__ import annotations

from pydantic import BaseModel, Field


class WebhookSecret(BaseModel):
    secret: str = Field(
        description="whsec_ + base64 key: verify `webhook-signature` with it (Standard Webhooks)"
    )
    created_at: str = Field(
        description="when this secret was made (RFC 3339); a rotation replaces it at once"
    )


class WebhookAttempt(BaseModel):
    """One try at delivering an event; times are unix seconds, as on OpenAI's objects."""

    event_id: str = Field(description="the webhook-id header: the same on every attempt of one event")
    type: str = Field(description="event type, e.g. batch.completed")
    attempt: int = Field(description="1 for the first try")
    attempted_at: int
    duration_ms: int
    status_code: int | None = Field(description="the receiver's HTTP status; null when none came")
    error: str | None = Field(description="why no status came: a timeout, a refused address, ...")
    next_retry_at: int | None = Field(description="when the next attempt is due; null when none will be")
