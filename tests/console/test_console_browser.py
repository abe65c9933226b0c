"""The console in real headless Chromium against a live `batchin serve`: open an account with an
invite, verify it through the mail a local SMTP server received, sign in, make a key, top up through
the local Stripe fake, watch a batch and cancel it, switch language, and a cross-site form refused."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import httpx2
import pytest

from tests.console.chromium import Browser
from tests.console.live_site import CHAT, Site, deliver_stripe_event, new_checkout_session, sign_in, sign_up
from tests.live_server import BATCHIN

pytestmark = pytest.mark.slow


def test_open_verify_sign_in_create_key_top_up_and_switch_language(site: Site, browser: Browser) -> None:
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    api_key = sign_up(browser, site, email)
    assert api_key.startswith("batchin_api_")
    assert "verification link" in browser.text("#verify-notice")
    me = httpx2.get(f"{site.base}/v1/users/me", headers={"Authorization": f"Bearer {api_key}"})
    assert me.json()["credit_balance_cents"] == 0

    browser.goto(site.mailbox.verification_link(email))
    assert "Email verified" in browser.text("h1")

    browser.goto(f"{site.base}/console/overview")
    browser.click("header form button")  # sign out
    assert browser.url.endswith("/console/login")
    sign_in(browser, site, email)
    assert browser.text("#balance") == "$0.00"

    browser.goto(f"{site.base}/console/keys")
    browser.fill("#key-name", "from-chromium")
    browser.fill("#key-rpm", "30")
    browser.click("#create-key")
    secret = browser.text("#new-secret").strip()
    assert secret.startswith("batchin_api_")
    assert "from-chromium" in browser.text("#key-list")
    made = httpx2.get(f"{site.base}/v1/keys", headers={"Authorization": f"Bearer {api_key}"}).json()
    assert {k["name"]: k["rate_limit_rpm"] for k in made}["from-chromium"] == 30

    browser.goto(f"{site.base}/console/billing")
    before = set(site.stripe.sessions)  # the Stripe fake is shared by the session's tests
    browser.fill("#amount", "20")
    # The form sends the browser on to Stripe's hosted page (unreachable here); the fake holds the session.
    browser.click("#checkout", navigates=False)
    session_id, _ = new_checkout_session(site.stripe, before)
    deliver_stripe_event(site, site.stripe.paid_event(session_id))
    browser.goto(f"{site.base}/topup/success?session_id={session_id}")
    assert "$20.00 was added to your balance" in browser.text("main")
    assert browser.text("#balance") == "$20.00"
    browser.goto(f"{site.base}/topup/cancelled")
    assert "Nothing was charged" in browser.text("main")

    browser.goto(f"{site.base}/console/overview?lang=zh")
    assert "余额" in browser.text("main")
    browser.goto(f"{site.base}/console/billing")  # the choice is remembered
    assert "充值记录" in browser.text("main")
    assert "已到账" in browser.text("#topup-history")


def test_watch_a_batch_progress_and_cancel_it(site: Site, browser: Browser) -> None:
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    api_key = sign_up(browser, site, email)
    browser.goto(site.mailbox.verification_link(email))
    credit = subprocess.run(
        [str(BATCHIN), "users", "credit", "--user", email, "--cents", "500"],
        env=site.env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert credit.returncode == 0
    tasks = [
        {
            "custom_id": f"t{i}",
            "model": CHAT,
            "request_body": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8},
        }
        for i in range(300)
    ]
    created = httpx2.post(
        f"{site.base}/v1/batches",
        json={"tasks": tasks},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=60,
    )
    assert created.status_code == 200, created.text
    batch_id = created.json()["id"]
    browser.goto(f"{site.base}/console/batches")
    row = f'tr[data-batch-id="{batch_id}"]'
    # Live progress: the counts change on the page without a reload (server-sent events).
    browser.wait_for(
        f"(() => {{ const p = document.querySelector('{row} progress'); return p && p.value > 0; }})()",
        timeout=120,
    )
    browser.click(f"{row} button.cancel-batch")
    status = browser.text(f"{row} .batch-status")
    assert status in ("cancelling", "cancelled"), status
    browser.wait_for(f"document.querySelector('{row} .batch-status').innerText === 'cancelled'", timeout=120)
    done = httpx2.get(
        f"{site.base}/v1/batches/{batch_id}", headers={"Authorization": f"Bearer {api_key}"}
    ).json()
    assert done["status"] == "cancelled"
    assert done["completed_tasks"] < 300
    # The calls the batch made show in the usage log.
    browser.goto(f"{site.base}/console/usage")
    assert CHAT in browser.text("#usage-log")


def test_a_cross_site_form_is_refused_in_the_browser(site: Site, browser: Browser, tmp_path: Path) -> None:
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    sign_up(browser, site, email)
    browser.goto(f"{site.base}/console/keys")
    before = browser.text("#key-list")
    # Another site (localhost is a different site from 127.0.0.1) posts a form at the console.
    evil = tmp_path / "evil.html"
    evil.write_text(
        f'<form id="f" method="post" action="{site.base}/console/keys">'
        '<input name="name" value="planted"><input name="csrf_token" value="guess"></form>'
        "<button id='go' onclick=\"document.getElementById('f').submit()\">go</button>"
    )
    browser.goto(evil.as_uri())
    browser.click("#go")
    assert "planted" not in browser.text("body")
    browser.goto(f"{site.base}/console/keys")
    assert browser.text("#key-list") == before
