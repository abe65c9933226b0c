"""/v1/topup/*."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from batchin.core.context import CallContext
from batchin.http_api.endpoint import Endpoint
from batchin.http_api.rendering import parse_json, read_body, render
from batchin.protocol.topup import (
    CheckoutRequest,
    CheckoutResponse,
    TopupRecord,
    UsdcChainsResponse,
    WebhookAck,
)

_WEBHOOK_MAX_BYTES = 1024 * 1024


async def create_stripe_checkout(request: Request, ctx: CallContext) -> Response:
    body = await parse_json(request, CheckoutRequest)
    return render(await request.app.state.services.topups.create_checkout(ctx.principal.user_id, body))


async def receive_stripe_webhook(request: Request) -> Response:
    payload = await read_body(request, _WEBHOOK_MAX_BYTES)
    ack = await request.app.state.services.topups.handle_stripe_webhook(
        payload, request.headers.get("stripe-signature")
    )
    return render(ack)


async def list_topup_history(request: Request, ctx: CallContext) -> Response:
    return render(await request.app.state.services.topups.history(ctx.principal.user_id))


async def list_usdc_chains(request: Request, ctx: CallContext) -> Response:
    return render(request.app.state.services.topups.usdc_chains())


ENDPOINTS = [
    Endpoint(
        "POST",
        "/v1/topup/stripe/checkout",
        create_stripe_checkout,
        "Create a Stripe Checkout session.",
        request_model=CheckoutRequest,
        response_model=CheckoutResponse,
        tag="billing",
        errors=(400, 503),
    ),
    Endpoint(
        "POST",
        "/v1/topup/stripe/webhook",
        receive_stripe_webhook,
        "Stripe's webhook: verifies the Stripe-Signature header, credits a paid session once.",
        public=True,
        response_model=WebhookAck,
        tag="billing",
        errors=(400, 413, 503),
    ),
    Endpoint(
        "GET",
        "/v1/topup/history",
        list_topup_history,
        "Top-ups, newest first.",
        response_model=list[TopupRecord],
        tag="billing",
    ),
    Endpoint(
        "GET",
        "/v1/topup/usdc/chains",
        list_usdc_chains,
        "USDC chains and deposit addresses.",
        response_model=UsdcChainsResponse,
        tag="billing",
    ),
]
