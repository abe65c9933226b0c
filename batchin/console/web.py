"""What every console page shares: its services, templates, the signed session cookie, CSRF, the
language, and the one place a core error becomes an HTML page.

Sessions: the cookie `batchin_session` holds a random token and its HMAC (keyed by a server file,
`{data_dir}/console/cookie_key`), HttpOnly and SameSite=Strict; the token's hash lives in the store
(core/accounts/sessions.py), so signing out revokes it everywhere at once. CSRF: every form carries
a token; signed in it is the session's own, before sign-in a random one doubled in a SameSite=Strict
cookie; and a POST whose Origin is another site is refused whatever it carries."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache, wraps
from typing import Any, Self
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from batchin.console.i18n import LANG_COOKIE, LANGUAGES, Translator, choose_language
from batchin.core.accounts.sessions import ConsoleSession
from batchin.core.secret_file import load_or_create_hex_key
from batchin.errors import BatchInError, PermissionDenied
from batchin.http_api.entries import entry_of
from batchin.protocol.accounts import UserResponse
from batchin.services import Services

__all__ = ["ConsoleDeps", "Page", "deps_of", "public_page", "render", "signed_in", "start_session"]

SESSION_COOKIE = "batchin_session"
CSRF_COOKIE = "batchin_csrf"
_MAX_FORM_BYTES = 64 * 1024
# The console's own scripts and styles only; the chart is inline SVG (no script).
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; media-src 'self' blob:; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, slots=True)
class ConsoleDeps:
    services: Services
    cookie_key: bytes

    @classmethod
    def from_services(cls, services: Services) -> Self:
        key_file = services.settings.data_dir / "console" / "cookie_key"
        return cls(services=services, cookie_key=load_or_create_hex_key(key_file, 32))

    def sign(self, token: str) -> str:
        mac = hmac.new(self.cookie_key, token.encode(), hashlib.sha256).hexdigest()
        return f"{token}.{mac}"

    def unsign(self, value: str) -> str | None:
        token = value.rpartition(".")[0]
        return token if token and hmac.compare_digest(self.sign(token), value) else None


def deps_of(request: Request) -> ConsoleDeps:
    """The console's deps for the app's current Services, built once per Services instance."""
    services: Services = request.app.state.services
    held: ConsoleDeps | None = getattr(request.app.state, "console_deps", None)
    if held is None or held.services is not services:
        held = ConsoleDeps.from_services(services)
        request.app.state.console_deps = held
    return held


@cache
def _templates() -> Environment:
    env = Environment(
        loader=PackageLoader("batchin.console", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = money
    env.filters["price"] = price
    env.globals["currency_symbols"] = CURRENCY_SYMBOLS
    return env


CURRENCY_SYMBOLS = {"USD": "$", "CNY": "¥"}


def money(minor_units: float | int | None, currency: str = "USD") -> str:
    """Cents (or fen) in the account's currency, exact to the millionth the ledger keeps (trailing
    zeros past two places dropped): `$1,234.50`, `¥0.000125`."""
    if minor_units is None:
        return "—"
    text = f"{minor_units / 100:,.8f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"{CURRENCY_SYMBOLS.get(currency, '')}{whole}.{fraction.ljust(2, '0')}"


def price(value: float) -> str:
    """A catalog price as written, never in exponent form: 5e-05 → `0.00005`, 0.07 → `0.07`, 2.0 → `2`."""
    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(slots=True)
class Page:
    """One request's view: the deps, the language, the signed-in user and session (None on public
    pages), and the form it posted (None on GET)."""

    request: Request
    deps: ConsoleDeps
    t: Translator
    csrf_token: str
    user: UserResponse | None = None
    session: ConsoleSession | None = None
    form: FormData | None = None
    set_csrf_cookie: bool = False

    @property
    def services(self) -> Services:
        return self.deps.services

    @property
    def user_id(self) -> str:
        if self.user is None:  # signed_in() always sets it; public pages never call this
            raise PermissionDenied("Sign in first.")
        return self.user.id

    def field(self, name: str, default: str = "") -> str:
        value = self.form.get(name) if self.form is not None else None
        return value.strip() if isinstance(value, str) else default


def render(page: Page, template: str, status: int = 200, **values: Any) -> Response:
    html = (
        _templates()
        .get_template(template)
        .render(
            t=page.t,
            lang=page.t.lang,
            languages=LANGUAGES,
            user=page.user,
            csrf_token=page.csrf_token,
            path=page.request.url.path,
            **values,
        )
    )
    response = HTMLResponse(html, status_code=status, headers=_HEADERS)
    _remember(page, response)
    return response


def redirect(page: Page, location: str) -> Response:
    response = RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})
    _remember(page, response)
    return response


def _remember(page: Page, response: Response) -> None:
    secure = page.request.url.scheme == "https"
    if page.request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(
            LANG_COOKIE, page.t.lang, max_age=365 * 86400, samesite="lax", secure=secure, httponly=True
        )
    if page.set_csrf_cookie:
        response.set_cookie(CSRF_COOKIE, page.csrf_token, httponly=True, samesite="strict", secure=secure)


def start_session(page: Page, response: Response, session: ConsoleSession) -> Response:
    lifetime = int(page.services.settings.console_session_hours * 3600)
    response.set_cookie(
        SESSION_COOKIE,
        page.deps.sign(session.token),
        max_age=lifetime,
        httponly=True,
        samesite="strict",
        secure=page.request.url.scheme == "https",
    )
    return response


def _translator(request: Request) -> Translator:
    # The China entry shows Chinese unless the visitor chose otherwise (?lang= or the cookie).
    entry = entry_of(request)
    accept = None if entry.language != "en" else request.headers.get("accept-language")
    return Translator(
        choose_language(
            request.query_params.get("lang"),
            request.cookies.get(LANG_COOKIE),
            accept,
            default=entry.language,
        )
    )


def _same_origin(request: Request) -> bool:
    """A browser's POST names its origin; one from another site is refused (SameSite=Strict already
    keeps the session cookie off it; this also covers the pre-sign-in forms)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


async def _read_form(request: Request, page: Page, expected: str | None) -> None:
    if not _same_origin(request):
        raise PermissionDenied(page.t("error.cross_site"))
    if int(request.headers.get("content-length") or 0) > _MAX_FORM_BYTES:
        raise PermissionDenied(page.t("error.form_too_large"))
    page.form = await request.form(max_files=0, max_fields=100)
    sent = page.field("csrf_token")
    if not expected or not sent or not hmac.compare_digest(sent, expected):
        raise PermissionDenied(page.t("error.csrf"))


Handler = Callable[[Page], Awaitable[Response]]


def _guarded(handler: Handler) -> Callable[[Page], Awaitable[Response]]:
    async def run(page: Page) -> Response:
        try:
            return await handler(page)
        except BatchInError as exc:
            return render(
                page, "message.html", status=exc.status, title=page.t("error.title"), message=exc.message
            )

    return run


def public_page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A page for anyone (sign-in, signup): its forms carry the double-submit CSRF token."""
    guarded = _guarded(handler)

    @wraps(handler)
    async def endpoint(request: Request) -> Response:
        cookie = request.cookies.get(CSRF_COOKIE)
        page = Page(request, deps_of(request), _translator(request), cookie or secrets.token_urlsafe(32))
        page.set_csrf_cookie = cookie is None
        if request.method == "POST":
            try:
                await _read_form(request, page, cookie)
            except PermissionDenied as exc:
                return render(
                    page, "message.html", status=403, title=page.t("error.title"), message=exc.message
                )
        return await guarded(page)

    return endpoint


def signed_in(handler: Handler, *, bounce: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """A page of a signed-in user: without a live session, GET goes to sign-in and POST is a 403.

    With `bounce` (the pages Stripe sends the browser back to), a GET without the cookie first
    reloads itself once from our own page: a navigation that came from another site carries no
    SameSite=Strict cookie, one started by our page does."""
    guarded = _guarded(handler)

    @wraps(handler)
    async def endpoint(request: Request) -> Response:
        deps = deps_of(request)
        t = _translator(request)
        token = deps.unsign(request.cookies.get(SESSION_COOKIE, ""))
        session = await deps.services.sessions.find(token) if token else None
        page = Page(request, deps, t, session.csrf_token if session else "")
        if session is None:
            if bounce and request.method == "GET" and "again" not in request.query_params:
                again = request.url.include_query_params(again="1")
                return render(page, "bounce.html", target=str(again.path) + "?" + again.query)
            if request.method == "GET":
                return redirect(page, "/console/login")
            return render(
                page, "message.html", status=403, title=t("error.title"), message=t("error.signed_out")
            )
        page.session = session
        page.user = await deps.services.accounts.get_user(session.user_id)
        if request.method == "POST":
            try:
                await _read_form(request, page, session.csrf_token)
            except PermissionDenied as exc:
                return render(page, "message.html", status=403, title=t("error.title"), message=exc.message)
        return await guarded(page)

    return endpoint
