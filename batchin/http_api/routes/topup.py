"""/v1/topup/*."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from starlette.requests import Request
from starlette.responses import Response

from batchin.core.billing.topups import TopupService
from batchin.core.context import CallContext
from batchin.http_api.endpoint import Endpoint
from batchin.http_api.entries import link_base_of
from batchin.http_api.paging import PAGE_QUERY, render_page, slice_page
from batchin.http_api.rendering import parse_json, read_body, render
from batchin.protocol.topup import (
    CheckoutRequest,
    CheckoutResponse,
    TopupRecord,
    UsdcChainsResponse,
    WebhookAck,
)
from batchin.services import Services

_WEBHOOK_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class TopupDeps:
    """What /v1/topup/* use."""

    topups: TopupService
    max_body_bytes: int

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(topups=services.topups, max_body_bytes=services.settings.max_body_bytes)


async def create_stripe_checkout(request: Request, ctx: CallContext, deps: TopupDeps) -> Response:
    body = await parse_json(request, CheckoutRequest, deps.max_body_bytes)
    checkout = await deps.topups.create_checkout(
        ctx.principal.user_id, body, return_base=link_base_of(request)
    )
    return render(checkout)


async def receive_stripe_webhook(request: Request, deps: TopupDeps) -> Response:
    payload = await read_body(request, _WEBHOOK_MAX_BYTES)
    ack = await deps.topups.handle_stripe_webhook(payload, request.headers.get("stripe-signature"))
    return render(ack)


async def list_topup_history(request: Request, ctx: CallContext, deps: TopupDeps) -> Response:
    history = await deps.topups.history(ctx.principal.user_id)
    return render_page(request, slice_page(request, history))


async def list_usdc_chains(request: Request, ctx: CallContext, deps: TopupDeps) -> Response:
    return render(deps.topups.usdc_chains())


ENDPOINTS = [
    Endpoint(
        "POST",
        "/v1/topup/stripe/checkout",
        create_stripe_checkout,
        "Create a Stripe Checkout session.",
        request_model=CheckoutRequest,
        response_model=CheckoutResponse,
        deps=TopupDeps,
        tag="billing",
        errors=(400, 503),
        scope="billing",
    ),
    Endpoint(
        "POST",
        "/v1/topup/stripe/webhook",
        receive_stripe_webhook,
        "Stripe's webhook: verifies the Stripe-Signature header, credits a paid session once.",
        public=True,
        response_model=WebhookAck,
        deps=TopupDeps,
        tag="billing",
        errors=(400, 413, 503),
    ),
    Endpoint(
        "GET",
        "/v1/topup/history",
        list_topup_history,
        'Top-ups, newest first; when more exist, a `Link: <...>; rel="next"` header names the next page.',
        response_model=list[TopupRecord],
        query=PAGE_QUERY,
        errors=(400,),
        deps=TopupDeps,
        tag="billing",
        scope="account:read",
    ),
    Endpoint(
        "GET",
        "/v1/topup/usdc/chains",
        list_usdc_chains,
        "USDC chains and deposit addresses.",
        response_model=UsdcChainsResponse,
        deps=TopupDeps,
        tag="billing",
        scope="account:read",
    ),
]
