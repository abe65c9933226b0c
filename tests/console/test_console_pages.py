"""The console's pages over the real ASGI app: signup by invite and email verification, sign-in by
password and by API key, keys, billing pages, and the guards (CSRF, cross-site posts, revoked
sessions, unverified accounts, the login rate limit)."""

from __future__ import annotations

import re
import uuid

import httpx2

from batchin.console.web import price
from batchin.services import Services
from tests.conftest import MakeUser, bearer
from tests.console.conftest import csrf_of, form_post
from tests.fakes.smtp_server import Mailbox

PASSWORD = "correct horse battery"


async def sign_up(client: httpx2.AsyncClient, services: Services, email: str) -> httpx2.Response:
    invite = await services.signup.create_invite()
    return await form_post(
        client,
        "/console/signup",
        "/console/signup",
        {"email": email, "password": PASSWORD, "name": "Ada", "entry": "global", "invite": invite},
    )


def new_email() -> str:
    return f"{uuid.uuid4().hex[:10]}@example.com"


async def test_signup_with_invite_opens_an_unverified_account_until_the_mailed_link(
    client: httpx2.AsyncClient, services: Services, mailbox: Mailbox
) -> None:
    email = new_email()
    done = await sign_up(client, services, email)
    assert done.status_code == 200, done.text
    secret = re.search(r'<code id="new-secret">([^<]+)</code>', done.text)
    assert secret is not None
    key = secret.group(1)
    me = await client.get("/v1/users/me", headers=bearer(key))
    assert me.json()["credit_balance_cents"] == 0
    # Unverified: reading the account works, a paid call is refused with a clear reason.
    refused = await client.post(
        "/v1/chat/completions", json={"model": "m", "messages": []}, headers=bearer(key)
    )
    assert refused.status_code == 403
    assert "Verify your account's email" in refused.json()["error"]["message"]
    link = mailbox.verification_link(email).replace("http://testserver", "")
    verified = await client.get(link)
    assert verified.status_code == 200
    # At once: the key of an unverified account is never cached as such.
    after = await client.post(
        "/v1/chat/completions", json={"model": "m", "messages": []}, headers=bearer(key)
    )
    assert after.status_code != 403
    again = await client.get(link)
    assert again.status_code == 404


async def test_signup_refuses_a_used_invite_and_changes_nothing(
    client: httpx2.AsyncClient, services: Services
) -> None:
    invite = await services.signup.create_invite()
    first = {"email": new_email(), "password": PASSWORD, "name": "A", "invite": invite}
    assert (await form_post(client, "/console/signup", "/console/signup", first)).status_code == 200
    client.cookies.clear()
    second = {**first, "email": new_email()}
    refused = await form_post(client, "/console/signup", "/console/signup", second)
    assert refused.status_code == 400
    assert "invite code is unknown or already used" in refused.text
    assert await services.accounts.count_users() == 1


async def test_closed_signup_refuses(client: httpx2.AsyncClient, services: Services) -> None:
    services.settings.signup = "closed"
    refused = await form_post(
        client, "/console/login", "/console/signup", {"email": new_email(), "password": PASSWORD, "name": "A"}
    )
    assert refused.status_code == 403
    assert await services.accounts.count_users() == 0


async def test_password_sign_in_then_sign_out_revokes_the_session(
    client: httpx2.AsyncClient, services: Services
) -> None:
    email = new_email()
    await sign_up(client, services, email)
    client.cookies.clear()
    signed = await form_post(
        client, "/console/login", "/console/login", {"email": email, "password": PASSWORD}
    )
    assert signed.status_code == 303
    assert signed.headers["location"] == "/console/overview"
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
    stolen = client.cookies.get("batchin_session")
    overview = await client.get("/console/overview")
    assert overview.status_code == 200
    assert email in overview.text
    out = await client.post(
        "/console/logout",
        data={"csrf_token": csrf_of(overview.text)},
        headers={"Origin": "http://testserver"},
    )
    assert out.status_code == 303
    # The old cookie, replayed after sign-out, opens nothing.
    client.cookies.set("batchin_session", stolen or "")
    assert (await client.get("/console/overview")).headers["location"] == "/console/login"
    posted = await client.post("/console/keys", data={"csrf_token": csrf_of(overview.text), "name": "x"})
    assert posted.status_code == 403


async def test_wrong_password_is_refused_and_attempts_are_limited(
    client: httpx2.AsyncClient, services: Services
) -> None:
    # A small limit, so the attempts fit well inside the limiter's one-minute window on a busy machine.
    services.settings.login_attempts_per_minute = 3
    email = new_email()
    await sign_up(client, services, email)
    client.cookies.clear()
    statuses = []
    for _ in range(services.settings.login_attempts_per_minute + 1):
        response = await form_post(
            client, "/console/login", "/console/login", {"email": email, "password": "nope"}
        )
        statuses.append(response.status_code)
    assert statuses[:-1] == [400] * services.settings.login_attempts_per_minute
    assert statuses[-1] == 429
    # Even the right password waits out the limit.
    right = await form_post(
        client, "/console/login", "/console/login", {"email": email, "password": PASSWORD}
    )
    assert right.status_code == 429


async def test_forged_cookie_is_refused(client: httpx2.AsyncClient) -> None:
    client.cookies.set("batchin_session", "made-up.0000")
    response = await client.get("/console/overview")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login"


async def test_cross_site_post_and_missing_csrf_token_are_refused(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    signed = await form_post(client, "/console/login", "/console/login/key", {"api_key": user.api_key})
    assert signed.status_code == 303
    page = await client.get("/console/keys")
    token = csrf_of(page.text)
    cross = await client.post(
        "/console/keys",
        data={"csrf_token": token, "name": "evil"},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    missing = await client.post(
        "/console/keys", data={"name": "evil"}, headers={"Origin": "http://testserver"}
    )
    assert missing.status_code == 403
    wrong = await client.post("/console/keys", data={"name": "evil", "csrf_token": "x" * 43})
    assert wrong.status_code == 403
    assert len(await services.accounts.list_keys(user.id)) == 1


async def test_keys_created_and_revoked_from_the_console(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    await form_post(client, "/console/login", "/console/login/key", {"api_key": user.api_key})
    created = await form_post(
        client,
        "/console/keys",
        "/console/keys",
        {"name": "ci", "scopes": ["inference"], "rate_limit_rpm": "7", "monthly_budget_dollars": "5"},
    )
    assert created.status_code == 201, created.text
    secret = re.search(r'<code id="new-secret">([^<]+)</code>', created.text)
    assert secret is not None
    keys = {k.name: k for k in await services.accounts.list_keys(user.id)}
    assert keys["ci"].scopes == ["inference"]
    assert keys["ci"].rate_limit_rpm == 7
    assert keys["ci"].monthly_budget_cents == 500
    assert (await client.get("/v1/users/me", headers=bearer(secret.group(1)))).status_code == 403
    revoked = await form_post(client, "/console/keys", f"/console/keys/{keys['ci'].id}/revoke", {})
    assert revoked.status_code == 303
    after = await client.post(
        "/v1/chat/completions", json={"model": "m", "messages": []}, headers=bearer(secret.group(1))
    )
    assert after.status_code == 401
    invalid = await form_post(client, "/console/keys", "/console/keys", {"rate_limit_rpm": "lots"})
    assert invalid.status_code == 400
    assert "rate_limit_rpm" in invalid.text


async def test_a_key_without_account_scopes_cannot_sign_in(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    from batchin.protocol.accounts import KeyCreateRequest

    narrow = await services.accounts.create_key(user.id, KeyCreateRequest(scopes=["inference"]))
    refused = await form_post(client, "/console/login", "/console/login/key", {"api_key": narrow.key})
    assert refused.status_code == 403
    assert "batchin_session" not in refused.headers.get("set-cookie", "")


async def test_pages_render_in_chinese_by_query_cookie_and_accept_language(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=1234)
    await form_post(client, "/console/login", "/console/login/key", {"api_key": user.api_key})
    english = await client.get("/console/overview")
    assert "Balance" in english.text
    assert "$12.34" in english.text
    chinese = await client.get("/console/overview?lang=zh")
    assert "余额" in chinese.text
    assert 'lang="zh-CN"' in chinese.text
    assert "余额" in (await client.get("/console/billing")).text  # remembered in batchin_lang
    client.cookies.delete("batchin_lang")
    negotiated = await client.get("/console/keys", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
    assert "创建 API Key" in negotiated.text


async def test_every_signed_in_page_renders(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    await form_post(client, "/console/login", "/console/login/key", {"api_key": user.api_key})
    for path in (
        "/console/overview",
        "/console/keys",
        "/console/usage",
        "/console/billing",
        "/console/batches",
        "/console/models",
        "/console/receipts",
        "/console/traces",
        "/console/prompts",
    ):
        for lang in ("en", "zh"):
            response = await client.get(f"{path}?lang={lang}")
            assert response.status_code == 200, (path, response.text[:500])
            assert "Content-Security-Policy" in response.headers
    csv = await client.get("/console/usage.csv")
    assert csv.status_code == 200
    assert csv.text.splitlines()[0].startswith("id,request_id,key_id,model")


async def test_topup_pages_exist(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user(credit_cents=500)
    await form_post(client, "/console/login", "/console/login/key", {"api_key": user.api_key})
    success = await client.get("/topup/success?session_id=cs_test_unknown")
    assert success.status_code == 200
    assert "$5.00" in success.text
    cancelled = await client.get("/topup/cancelled")
    assert cancelled.status_code == 200
    assert "Nothing was charged" in cancelled.text


async def test_stripe_return_without_the_cookie_reloads_once_from_our_own_page(
    client: httpx2.AsyncClient,
) -> None:
    # Back from Stripe's site the SameSite=Strict cookie is not sent; a reload our page starts sends it.
    first = await client.get("/topup/success?session_id=cs_test_x")
    assert first.status_code == 200
    target = "/topup/success?session_id=cs_test_x&amp;again=1"
    assert f'http-equiv="refresh" content="0;url={target}"' in first.text
    second = await client.get("/topup/success?session_id=cs_test_x&again=1")
    assert second.status_code == 303
    assert second.headers["location"] == "/console/login"


async def test_a_cny_account_sees_yuan_amounts_and_prices(
    client: httpx2.AsyncClient, services: Services
) -> None:
    user = await services.accounts.create_user(new_email(), "Yuan", 1234, currency="CNY")
    await form_post(client, "/console/login", "/console/login/key", {"api_key": user.api_key})
    overview = (await client.get("/console/overview")).text
    assert "¥12.34" in overview
    assert "$" not in overview
    billing = (await client.get("/console/billing")).text
    assert "¥12.34" in billing  # the balance and the opening credit in history
    assert "Monthly budget in CNY" in (await client.get("/console/keys")).text
    models = (await client.get("/console/models")).text
    assert "Standard prices in CNY" in models
    assert "¥" in models
    assert "$" not in models
    chinese = (await client.get("/console/usage?lang=zh")).text
    assert "人民币" in chinese


async def test_a_china_entry_signup_opens_a_cny_account(
    client: httpx2.AsyncClient, services: Services
) -> None:
    invite = await services.signup.create_invite()
    email = new_email()
    fields = {"email": email, "password": PASSWORD, "name": "Li", "entry": "china", "invite": invite}
    await form_post(client, "/console/signup", "/console/signup", fields)
    assert (await services.accounts.find_user(email)).currency == "CNY"


async def test_models_page_writes_every_price_plainly(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    await form_post(client, "/console/login", "/console/login/key", {"api_key": user.api_key})
    for lang in ("en", "zh"):
        page = (await client.get(f"/console/models?lang={lang}")).text
        prices = re.findall(r"<td>([^<]*[$¥][^<]*)</td>", page)
        assert prices, page[:2000]
        assert not [p for p in prices if "None" in p or re.search(r"\de-\d", p)], prices
    assert "per 1M input tokens" in (await client.get("/console/models?lang=en")).text  # embeddings


def test_price_filter_never_uses_exponents() -> None:
    assert (price(5e-05), price(0.07), price(2.0), price(0.000125)) == ("0.00005", "0.07", "2", "0.000125")
