"""Receipts, traces and prompts in real headless Chromium against the shared live server: a real
chat call with the user's key, its receipt found on the Receipts page and verified by the browser
(the /verify page's own verifier), its trace's waterfall drawn, and a registry's versions and label."""

from __future__ import annotations

import subprocess
import time
import uuid

import httpx2
import pytest

from tests.console.chromium import Browser
from tests.console.live_site import CHAT, Site, sign_up
from tests.live_server import BATCHIN

pytestmark = pytest.mark.slow


def test_find_verify_trace_a_call_and_see_a_prompt_registry(site: Site, browser: Browser) -> None:
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    api_key = sign_up(browser, site, email)
    browser.goto(site.mailbox.verification_link(email))
    subprocess.run(
        [str(BATCHIN), "users", "credit", "--user", email, "--cents", "100"],
        env=site.env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    # The signup key has no prompts:write; the console's key form (a signed-in person) grants it.
    browser.goto(f"{site.base}/console/keys?lang=en")
    browser.fill("#key-name", "prompts")
    browser.check('input[name="scopes"][value="prompts:write"]')
    browser.click("#create-key")
    prompts_key = browser.text("#new-secret").strip()
    call = httpx2.post(
        f"{site.base}/v1/chat/completions",
        json={"model": CHAT, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=120,
    )
    assert call.status_code == 200, call.text
    for version in ("v1", "v2"):
        made = httpx2.post(
            f"{site.base}/v1/prompts",
            json={"registry_id": "support", "version": version, "template": "Hi"},
            headers={"Authorization": f"Bearer {prompts_key}"},
        )
        assert made.status_code == 200, made.text
    record_id = call.headers["X-VaaS-Record-Id"]

    browser.goto(f"{site.base}/console/receipts?lang=en")
    row = f'tr[data-record-id="{record_id}"]'
    assert CHAT in browser.text(row)
    browser.click(f"{row} a.receipt-link")
    assert browser.url == f"{site.base}/console/receipts/{record_id}"
    # Verified here, by verify.js over the pack the console serves for the user's own record.
    browser.wait_for("document.getElementById('verdict').dataset.state !== 'pending'")
    assert browser.eval("document.getElementById('verdict').dataset.state") == "valid", browser.text(
        "#verdict"
    )
    checks = browser.eval("[...document.querySelectorAll('#checks li')].map(li => li.dataset.ok)")
    assert checks == ["true"] * 8

    # The call's trace is written behind (every trace_flush_seconds): under load the page may
    # be drawn before it is stored, and then names the id without a link. Reload until it links.
    deadline = time.monotonic() + 30
    while not browser.eval("document.getElementById('trace-link') !== null"):
        assert time.monotonic() < deadline, browser.text("main")
        time.sleep(0.3)
        browser.goto(f"{site.base}/console/receipts/{record_id}")
    browser.click("#trace-link")
    bars = browser.eval(
        "[...document.querySelectorAll('#waterfall rect.wf-span')].map(r => r.getBoundingClientRect().width)"
    )
    assert len(bars) >= 3, bars
    assert min(bars) > 0, bars
    # Sized by time: the call's bar spans the whole row, its parts are shorter.
    assert bars[0] == max(bars) > min(bars), bars
    browser.click("#waterfall details summary", navigates=False)
    assert "batchin.record_id" in browser.text("#waterfall details[open]")

    browser.goto(f"{site.base}/console/prompts")
    browser.click('tr[data-registry-id="support"] a')
    labels = browser.eval(
        "Object.fromEntries([...document.querySelectorAll('#version-list tbody tr')].map(tr =>"
        " [tr.dataset.versionId, [...tr.querySelectorAll('[data-label]')].map(s => s.dataset.label)]))"
    )
    assert labels == {"support@v2": ["latest"], "support@v1": ["promoted"]}
