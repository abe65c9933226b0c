"""The console's route table: /console/* and the pages Stripe Checkout returns to."""

from __future__ import annotations

from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from batchin.console import account_pages, activity_pages, auth_pages
from batchin.console.web import public_page, signed_in

__all__ = ["STATIC_ASSETS", "console_routes"]

# Every file /console/static/ serves, with its media type (licences included, as shipped).
STATIC_ASSETS = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "htmx.min.js": "text/javascript; charset=utf-8",
    "LICENSE-htmx.txt": "text/plain; charset=utf-8",
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
    get, post = ["GET"], ["POST"]
    return [
        Route("/console", console_home, methods=get),
        Route("/console/static/{name}", static_asset, methods=get),
        Route("/console/login", public_page(auth_pages.show_login), methods=get),
        Route("/console/login", public_page(auth_pages.login), methods=post),
        Route("/console/login/key", public_page(auth_pages.login_with_key), methods=post),
        Route("/console/logout", signed_in(auth_pages.logout), methods=post),
        Route("/console/signup", public_page(auth_pages.show_signup), methods=get),
        Route("/console/signup", public_page(auth_pages.signup), methods=post),
        Route(
            "/console/verify-email",
            public_page(auth_pages.verify_email),
            methods=get,
            name="console:verify_email",
        ),
        Route("/console/overview", signed_in(account_pages.overview), methods=get),
        Route("/console/keys", signed_in(account_pages.show_keys), methods=get),
        Route("/console/keys", signed_in(account_pages.create_key), methods=post),
        Route("/console/keys/{key_id}/revoke", signed_in(account_pages.revoke_key), methods=post),
        Route("/console/billing", signed_in(account_pages.billing), methods=get),
        Route("/console/billing/checkout", signed_in(account_pages.checkout), methods=post),
        Route("/topup/success", signed_in(account_pages.topup_success, bounce=True), methods=get),
        Route("/topup/cancelled", signed_in(account_pages.topup_cancelled, bounce=True), methods=get),
        Route("/console/usage", signed_in(activity_pages.usage), methods=get),
        Route("/console/usage.csv", signed_in(activity_pages.usage_csv), methods=get),
        Route("/console/batches", signed_in(activity_pages.batches), methods=get),
        Route("/console/batches/{batch_id}/cancel", signed_in(activity_pages.cancel_batch), methods=post),
        Route("/console/batches/{batch_id}/events", signed_in(activity_pages.batch_events), methods=get),
        Route("/console/files/{file_id}", signed_in(activity_pages.download_file), methods=get),
        Route("/console/models", signed_in(activity_pages.models), methods=get),
    ]
