"""/v1/webhooks/secret: the caller's webhook signing secret (Standard Webhooks), read and rotated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from starlette.requests import Request
from starlette.responses import Response

from batchin.core.context import CallContext
from batchin.core.webhooks.service import WebhookService
from batchin.http_api.endpoint import Endpoint
from batchin.http_api.rendering import render
from batchin.protocol.webhooks import WebhookSecret
from batchin.services import Services


@dataclass(frozen=True, slots=True)
class WebhookDeps:
    """What /v1/webhooks/secret* use."""

    webhooks: WebhookService

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(webhooks=services.webhooks)


async def retrieve_webhook_secret(request: Request, ctx: CallContext, deps: WebhookDeps) -> Response:
    secret = await deps.webhooks.get_signing_secret(ctx.principal.user_id)
    return render(secret)


async def rotate_webhook_secret(request: Request, ctx: CallContext, deps: WebhookDeps) -> Response:
    secret = await deps.webhooks.rotate_signing_secret(ctx.principal.user_id)
    return render(secret)


ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/webhooks/secret",
        retrieve_webhook_secret,
        "The secret that signs your webhooks (made on first read); verify `webhook-signature` with it.",
        response_model=WebhookSecret,
        deps=WebhookDeps,
        tag="webhooks",
        scope="keys:write",
    ),
    Endpoint(
        "POST",
        "/v1/webhooks/secret/rotate",
        rotate_webhook_secret,
        "Replace the signing secret: deliveries from now on are signed with the new one only.",
        response_model=WebhookSecret,
        deps=WebhookDeps,
        tag="webhooks",
        scope="keys:write",
    ),
]
