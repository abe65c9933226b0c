"""/v1/webhooks/secret: the caller's webhook signing secret (Standard Webhooks), read and rotated."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from batchin.core.context import CallContext
from batchin.http_api.endpoint import Endpoint
from batchin.http_api.rendering import render
from batchin.protocol.webhooks import WebhookSecret


async def retrieve_webhook_secret(request: Request, ctx: CallContext) -> Response:
    secret = await request.app.state.services.webhooks.get_signing_secret(ctx.principal.user_id)
    return render(secret)


async def rotate_webhook_secret(request: Request, ctx: CallContext) -> Response:
    secret = await request.app.state.services.webhooks.rotate_signing_secret(ctx.principal.user_id)
    return render(secret)


ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/webhooks/secret",
        retrieve_webhook_secret,
        "The secret that signs your webhooks (made on first read); verify `webhook-signature` with it.",
        response_model=WebhookSecret,
        tag="webhooks",
    ),
    Endpoint(
        "POST",
        "/v1/webhooks/secret/rotate",
        rotate_webhook_secret,
        "Replace the signing secret: deliveries from now on are signed with the new one only.",
        response_model=WebhookSecret,
        tag="webhooks",
    ),
]
