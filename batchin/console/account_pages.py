"""Overview, API keys and billing: each a form over the core service the HTTP API calls."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.responses import Response

from batchin.console.web import Page, redirect, render
from batchin.core.clock import utcnow
from batchin.http_api.entries import link_base_of
from batchin.protocol.accounts import ALL_SCOPES, KeyCreateRequest
from batchin.protocol.common import validate
from batchin.protocol.topup import CheckoutRequest


async def overview(page: Page) -> Response:
    services = page.services
    keys = [k for k in await services.accounts.list_keys(page.user_id) if k.is_active]
    requests, errors = await services.usage.activity(page.user_id, utcnow() - timedelta(hours=24))
    verified = await services.signup.is_verified(page.user_id)
    return render(page, "overview.html", keys=keys, requests=requests, errors=errors, verified=verified)


async def show_keys(page: Page) -> Response:
    keys = await page.services.accounts.list_keys(page.user_id)
    return render(page, "keys.html", keys=keys, scopes=ALL_SCOPES, created=None)


def _optional_int(text: str) -> int | str | None:
    # Left as text when not a number, so validation names the field instead of a crash here.
    return None if not text else int(text) if text.isdigit() else text


async def create_key(page: Page) -> Response:
    form = page.form
    scopes = [s for s in (form.getlist("scopes") if form is not None else []) if isinstance(s, str)]
    models = [m.strip() for m in page.field("models").split(",") if m.strip()]
    budget = _optional_int(page.field("monthly_budget_dollars"))
    body: dict[str, Any] = {
        "name": page.field("name") or None,
        "scopes": scopes,
        "models": models,
        "rate_limit_rpm": _optional_int(page.field("rate_limit_rpm")),
        # The form asks for whole dollars; the service keeps cents.
        "monthly_budget_cents": budget * 100 if isinstance(budget, int) else budget,
    }
    request = validate(KeyCreateRequest, body)
    created = await page.services.accounts.create_key(page.user_id, request)
    keys = await page.services.accounts.list_keys(page.user_id)
    return render(page, "keys.html", status=201, keys=keys, scopes=ALL_SCOPES, created=created)


async def revoke_key(page: Page) -> Response:
    await page.services.accounts.revoke_key(page.user_id, page.request.path_params["key_id"])
    return redirect(page, "/console/keys")


async def billing(page: Page) -> Response:
    history = await page.services.topups.history(page.user_id)
    settings = page.services.settings
    return render(
        page,
        "billing.html",
        history=history,
        stripe=bool(settings.stripe_secret_key),
        min_dollars=settings.topup_min_cents / 100,
        max_dollars=settings.topup_max_cents / 100,
    )


async def checkout(page: Page) -> Response:
    dollars = page.field("amount_dollars")
    cents: int | str = round(float(dollars) * 100) if _is_amount(dollars) else dollars
    request = validate(CheckoutRequest, {"amount_cents": cents})
    session = await page.services.topups.create_checkout(
        page.user_id, request, return_base=link_base_of(page.request)
    )
    return redirect(page, session.checkout_url)


def _is_amount(text: str) -> bool:
    whole, _, cents = text.partition(".")
    return whole.isdigit() and (cents == "" or (cents.isdigit() and len(cents) <= 2))


async def topup_result(page: Page, *, succeeded: bool) -> Response:
    session_id = page.request.query_params.get("session_id", "")
    history = await page.services.topups.history(page.user_id)
    record = next((r for r in history if r.reference_id == session_id), None) if session_id else None
    return render(page, "topup_result.html", succeeded=succeeded, record=record)


async def topup_success(page: Page) -> Response:
    return await topup_result(page, succeeded=True)


async def topup_cancelled(page: Page) -> Response:
    return await topup_result(page, succeeded=False)
