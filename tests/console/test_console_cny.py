"""A CNY account end to end in real headless Chromium, through the China entry of the shared live
server (http://localhost:PORT; the global entry is http://127.0.0.1:PORT): the console speaks
Chinese without being asked, an invite signup opens a CNY account, prices show in yuan, the Stripe
Checkout session the console creates is in CNY with Alipay and WeChat Pay, the paid top-up lands in
fen, and a paid call's cost shows in ¥ on the Usage page; English and back."""

from __future__ import annotations

import json
import uuid

import httpx2
import pytest

from batchin.console.web import money
from tests.console.chromium import Browser
from tests.console.live_site import (
    CHAT,
    PASSWORD,
    Site,
    deliver_stripe_event,
    invite,
    new_checkout_session,
    sign_in,
)

pytestmark = pytest.mark.slow


def test_a_cny_account_end_to_end_on_the_china_entry(site: Site, browser: Browser) -> None:
    china = site.china_base
    email = f"{uuid.uuid4().hex[:8]}@example.cn"

    # Chinese by default (no ?lang, no cookie; the browser asks for English), China entry preselected.
    browser.goto(f"{china}/console/signup")
    assert browser.eval("document.documentElement.lang") == "zh-CN"
    assert browser.text("h1") == "注册账户"
    assert browser.eval("document.querySelector('input[name=entry][value=china]').checked") is True
    browser.fill("#email", email)
    browser.fill("#password", PASSWORD)
    browser.fill("#name", "李雷")
    browser.fill("#invite", invite(site))
    browser.click("#sign-up")
    api_key = browser.text("#new-secret").strip()
    auth = {"Authorization": f"Bearer {api_key}"}
    me = httpx2.get(f"{site.base}/v1/users/me", headers=auth).json()
    assert (me["currency"], me["credit_balance_cents"]) == ("CNY", 0)

    # The mailed link brings the person back through the China entry they signed up on, in Chinese.
    link = site.mailbox.verification_link(email)
    assert link.startswith(f"{china}/console/verify-email")
    browser.goto(link)
    assert browser.text("h1") == "邮箱已验证"

    sign_in(browser, site, email, base=china)
    assert browser.text("#balance") == "¥0.00"

    # Models: the catalog in yuan, the same figures /v1/models gives this account.
    priced = httpx2.get(f"{site.base}/v1/models/{CHAT}", headers=auth).json()["pricing"]
    assert priced["currency"] == "CNY"
    browser.goto(f"{china}/console/models")
    row = browser.eval(
        "Array.from(document.querySelectorAll('#model-list tbody tr'))"
        f".map(r => r.innerText).find(t => t.startsWith({json.dumps(CHAT)}))"
    )
    assert f"输入 ¥{priced['std_input']} / 输出 ¥{priced['std_output']}" in row, row
    assert "$" not in browser.text("#model-list")

    # Top up ¥50 through the Stripe fake: a CNY session offering Alipay and WeChat Pay, no cards.
    browser.goto(f"{china}/console/billing")
    before = set(site.stripe.sessions)
    browser.fill("#amount", "50")
    browser.click("#checkout", navigates=False)  # on to Stripe's hosted page (unreachable here)
    session_id, session = new_checkout_session(site.stripe, before)
    assert session["currency"] == "cny"
    assert session["amount_total"] == 5000  # fen
    assert sorted(session["payment_method_types"]) == ["alipay", "wechat_pay"]
    deliver_stripe_event(site, site.stripe.complete(session_id, "alipay"))
    # Stripe returns the browser to the entry the top-up began on.
    assert session["success_url"] == f"{china}/topup/success?session_id={{CHECKOUT_SESSION_ID}}"
    assert session["cancel_url"] == f"{china}/topup/cancelled"
    browser.goto(session["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id))
    assert "已向您的余额充值 ¥50.00" in browser.text("main")
    assert browser.text("#balance") == "¥50.00"
    assert httpx2.get(f"{site.base}/v1/users/me", headers=auth).json()["credit_balance_cents"] == 5000

    # One paid call: its cost is in fen at the yuan prices, and the Usage page shows it in ¥.
    called = httpx2.post(
        f"{site.base}/v1/chat/completions",
        json={"model": CHAT, "messages": [{"role": "user", "content": "你好"}], "max_tokens": 4},
        headers=auth,
        timeout=120,
    )
    assert called.status_code == 200, called.text
    (log,) = httpx2.get(f"{site.base}/v1/usage/logs", headers=auth).json()
    yuan = (log["input_tokens"] * priced["std_input"] + log["output_tokens"] * priced["std_output"]) / 1e6
    assert log["cost_cents"] == pytest.approx(yuan * 100, abs=1e-6)
    browser.goto(f"{china}/console/usage")
    assert browser.text("h1") == "用量"
    log_row = browser.text("#usage-log tbody tr")
    assert CHAT in log_row
    assert money(log["cost_cents"], "CNY") in log_row, log_row

    # English on request (the language links), still in yuan; then back to Chinese.
    browser.click(".langs a[hreflang=en]")
    assert browser.eval("document.documentElement.lang") == "en"
    assert browser.text("h1") == "Usage"
    assert money(log["cost_cents"], "CNY") in browser.text("#usage-log tbody tr")
    browser.goto(f"{china}/console/overview")  # the choice is remembered
    assert "Balance" in browser.text("main")
    browser.click(".langs a[hreflang=zh-CN]")
    assert browser.eval("document.documentElement.lang") == "zh-CN"
    assert "余额" in browser.text("main")
