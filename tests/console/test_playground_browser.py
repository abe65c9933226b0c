"""The Playground in real headless Chromium against the shared live server: a refused call shown
readably (402, no credit yet), then a chat streamed token by token once credited, speech played in an
<audio> element, the calls in the Usage page's log and chart, and a receipt link whose verify page
says valid."""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from tests.console.chromium import Browser
from tests.console.live_site import CHAT, Site, sign_up
from tests.live_server import BATCHIN

pytestmark = pytest.mark.slow

SPEECH = "piper-en-us-joe-medium"
# Counts every change to the reply box, so the test sees the text arrive in pieces, not at once.
WATCH_REPLY = (
    "window.__changes = 0; new MutationObserver(() => window.__changes++)"
    ".observe(document.getElementById('chat-output'), {childList: true, characterData: true, subtree: true})"
)


def _send_chat(browser: Browser, prompt: str) -> None:
    browser.fill("#chat-model", CHAT)
    browser.fill("#chat-user", prompt)
    browser.fill("#chat-max-tokens", "24")
    browser.fill("#chat-temperature", "0")
    browser.click("#chat-send", navigates=False)


def _wait_valid(browser: Browser, url: str) -> None:
    """The verify page's verdict; the record is appended to the log just after the stream ends."""
    deadline = time.monotonic() + 30
    while True:
        browser.goto(url)
        state = browser.wait_for(
            "(() => { const s = document.getElementById('verdict').dataset.state;"
            " return s === 'pending' ? '' : s; })()"
        )
        if state == "valid" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert state == "valid", browser.text("#verdict")


def test_stream_a_chat_speak_and_follow_the_receipt(site: Site, browser: Browser) -> None:
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    sign_up(browser, site, email)
    browser.goto(site.mailbox.verification_link(email))
    browser.goto(f"{site.base}/console/playground")
    assert "Playground" in browser.text("h1")

    _send_chat(browser, "Say hello.")  # zero credit: the API's 402, said readably
    error = browser.wait_for(
        "(() => { const e = document.getElementById('chat-error'); return !e.hidden && e.innerText; })()"
    )
    assert "Insufficient balance" in error, error
    assert "HTTP 402" in error, error

    subprocess.run(
        [str(BATCHIN), "users", "credit", "--user", email, "--cents", "500"],
        env=site.env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    browser.eval(WATCH_REPLY)
    _send_chat(browser, "Write one sentence about the sea.")
    browser.wait_for("document.getElementById('chat-output').dataset.state === 'done'", timeout=120)
    reply = browser.text("#chat-output")
    assert reply.strip(), "no tokens arrived"
    assert browser.eval("window.__changes") >= 3  # streamed: the text grew in several steps
    assert browser.eval("document.getElementById('chat-error').hidden")
    receipt = browser.eval("document.querySelector('#chat-meta a.receipt').getAttribute('href')")
    assert receipt.startswith("/verify/")
    assert "tokens in / out" in browser.text("#chat-meta")

    browser.fill("#speech-model", SPEECH)
    browser.fill("#speech-input", "Hello from the playground.")
    browser.click("#speech-send", navigates=False)
    browser.wait_for("!document.getElementById('speech-meta').hidden", timeout=120)
    assert browser.eval("document.getElementById('speech-error').hidden"), browser.text("#speech-error")
    assert browser.eval("document.getElementById('speech-audio').src").startswith("blob:")
    duration = browser.wait_for(
        "(() => { const a = document.getElementById('speech-audio');"
        " return a.duration > 0 && a.duration; })()"
    )
    assert duration > 0.5

    browser.goto(f"{site.base}/console/usage")
    assert CHAT in browser.text("#usage-log")
    assert SPEECH in browser.text("#usage-log")
    assert CHAT in browser.text(".charts")  # the chart's legend

    _wait_valid(browser, f"{site.base}{receipt}")
    assert browser.text("#verdict").startswith("Valid")
