"""Signing in (password or API key), signing out, opening an account and verifying its email."""

from __future__ import annotations

from starlette.responses import Response

from batchin.console.playground_pages import revoke_session_key
from batchin.console.web import SESSION_COOKIE, Page, redirect, render, start_session
from batchin.core.accounts.signup import ENTRIES, SignupForm
from batchin.errors import BatchInError, InvalidRequest
from batchin.http_api.entries import entry_of

# An API key signs in to the console only when it may see and manage the whole account.
_ACCOUNT_SCOPES = frozenset({"account:read", "keys:write", "billing"})


async def show_login(page: Page) -> Response:
    return render(page, "login.html", signup=page.services.signup.mode)


async def login(page: Page) -> Response:
    client = page.request.client.host if page.request.client else "unknown"
    try:
        user_id = await page.services.signup.sign_in(
            page.field("email"), page.field("password"), client=client
        )
    except BatchInError as exc:
        message = page.t("login.failed") if isinstance(exc, InvalidRequest) else exc.message
        return render(
            page,
            "login.html",
            status=exc.status,
            error=message,
            email=page.field("email"),
            signup=page.services.signup.mode,
        )
    return await _open_session(page, user_id)


async def login_with_key(page: Page) -> Response:
    try:
        principal = await page.services.auth.authenticate(page.field("api_key"))
    except BatchInError:
        return render(
            page,
            "login.html",
            status=401,
            key_error=page.t("login.key_failed"),
            signup=page.services.signup.mode,
        )
    if not principal.scopes >= _ACCOUNT_SCOPES:
        return render(
            page,
            "login.html",
            status=403,
            key_error=page.t("login.key_scopes"),
            signup=page.services.signup.mode,
        )
    return await _open_session(page, principal.user_id)


async def _open_session(page: Page, user_id: str) -> Response:
    session = await page.services.sessions.open(user_id)
    return start_session(page, redirect(page, "/console/overview"), session)


async def logout(page: Page) -> Response:
    if page.session is not None:
        await revoke_session_key(page)
        await page.services.sessions.revoke(page.session.token)
    response = redirect(page, "/console/login")
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict")
    return response


async def show_signup(page: Page) -> Response:
    # The entry the visitor came in by is preselected (the China entry opens CNY accounts).
    values = {"entry": entry_of(page.request).name}
    return render(page, "signup.html", mode=page.services.signup.mode, entries=ENTRIES, values=values)


async def signup(page: Page) -> Response:
    fields = ("email", "name", "entry", "invite")
    values = {name: page.field(name) for name in fields}
    form = SignupForm(
        email=values["email"],
        password=page.field("password"),
        name=values["name"],
        entry=values["entry"] or entry_of(page.request).name,
        invite=values["invite"],
    )
    # From the configured base URL, never the request's Host header (which the caller controls).
    verify_url = f"{page.services.settings.own_base_url}/console/verify-email"
    try:
        created = await page.services.signup.sign_up(form, verify_url=verify_url)
    except BatchInError as exc:
        return render(
            page,
            "signup.html",
            status=exc.status,
            error=exc.message,
            mode=page.services.signup.mode,
            entries=ENTRIES,
            values=values,
        )
    session = await page.services.sessions.open(created.id)
    page.csrf_token = session.csrf_token
    verified = await page.services.signup.is_verified(created.id)
    response = render(
        page, "signup_done.html", api_key=created.api_key, verified=verified, email=created.email
    )
    return start_session(page, response, session)


async def verify_email(page: Page) -> Response:
    await page.services.signup.verify_email(page.request.query_params.get("token", ""))
    return render(
        page,
        "message.html",
        title=page.t("verify.title"),
        message=page.t("verify.done"),
        link=("/console/overview", page.t("nav.overview")),
    )
