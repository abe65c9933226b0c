"""The console's route table: /console/* and the pages Stripe Checkout returns to."""

from __future__ import annotations

from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from batchin.console import (
    account_pages,
    activity_pages,
    auth_pages,
    evidence_pages,
    playground_pages,
    prompt_pages,
)
from batchin.console.web import public_page, signed_in

__all__ = ["STATIC_ASSETS", "console_routes"]

# Every file /console/static/ serves, with its media type (licences included, as shipped).
STATIC_ASSETS = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "receipt.js": "text/javascript; charset=utf-8",
    "htmx.min.js": "text/javascript; charset=utf-8",
    "LICENSE-htmx.txt": "text/plain; charset=utf-8",
    "playground.js": "text/javascript; charset=utf-8",
    "playground.css": "text/css; charset=utf-8",
}


@cache
def _asset(name: str) -> bytes:
    return resources.files("batchin.console").joinpath("static", name).read_bytes()


async def static_asset(request: Request) -> Response:
    name = request.path_params["name"]
    media_type = STATIC_ASSETS.get(name)
    if media_type is None:
        return Response("Not found", status_code=404, media_type="text/plain")
    return Response(
        _asset(name),
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


async def console_home(request: Request) -> Response:
    return RedirectResponse("/console/overview", status_code=303)


def console_routes() -> list[BaseRoute]:
    """Two mounts of HTML pages, kept apart from the API's operations (which /openapi.json lists):
    /console/* and /topup/*, where Stripe Checkout returns the browser. /console itself redirects
    to /console/ (Starlette's trailing-slash redirect), which goes to the overview."""
    get, post = ["GET"], ["POST"]
    console = [
        Route("/", console_home, methods=get),
        Route("/static/{name}", static_asset, methods=get),
        Route("/login", public_page(auth_pages.show_login), methods=get),
        Route("/login", public_page(auth_pages.login), methods=post),
        Route("/login/key", public_page(auth_pages.login_with_key), methods=post),
        Route("/logout", signed_in(auth_pages.logout), methods=post),
        Route("/signup", public_page(auth_pages.show_signup), methods=get),
        Route("/signup", public_page(auth_pages.signup), methods=post),
        Route("/verify-email", public_page(auth_pages.verify_email), methods=get, name="verify_email"),
        Route("/overview", signed_in(account_pages.overview), methods=get),
        Route("/keys", signed_in(account_pages.show_keys), methods=get),
        Route("/keys", signed_in(account_pages.create_key), methods=post),
        Route("/keys/{key_id}/revoke", signed_in(account_pages.revoke_key), methods=post),
        Route("/billing", signed_in(account_pages.billing), methods=get),
        Route("/billing/checkout", signed_in(account_pages.checkout), methods=post),
        Route("/usage", signed_in(activity_pages.usage), methods=get),
        Route("/usage.csv", signed_in(activity_pages.usage_csv), methods=get),
        Route("/batches", signed_in(activity_pages.batches), methods=get),
        Route("/batches/{batch_id}/cancel", signed_in(activity_pages.cancel_batch), methods=post),
        Route("/batches/{batch_id}/events", signed_in(activity_pages.batch_events), methods=get),
        Route("/files/{file_id}", signed_in(activity_pages.download_file), methods=get),
        Route("/models", signed_in(activity_pages.models), methods=get),
        Route("/playground", signed_in(playground_pages.playground), methods=get),
        Route("/playground/key", signed_in(playground_pages.mint_key), methods=post),
        Route("/receipts", signed_in(evidence_pages.receipts), methods=get),
        Route("/receipts/{record_id}", signed_in(evidence_pages.receipt), methods=get),
        Route("/receipts/{record_id}/evidence", signed_in(evidence_pages.receipt_evidence), methods=get),
        Route("/traces", signed_in(evidence_pages.traces), methods=get),
        Route("/traces/{trace_id}", signed_in(evidence_pages.trace), methods=get),
        Route("/prompts", signed_in(prompt_pages.prompts), methods=get),
        Route("/prompts/{registry_id}", signed_in(prompt_pages.registry), methods=get),
        Route("/prompts/{registry_id}/labels", signed_in(prompt_pages.move_label), methods=post),
    ]
    topup = [
        Route("/success", signed_in(account_pages.topup_success, bounce=True), methods=get),
        Route("/cancelled", signed_in(account_pages.topup_cancelled, bounce=True), methods=get),
    ]
    return [Mount("/console", routes=console, name="console"), Mount("/topup", routes=topup)]
