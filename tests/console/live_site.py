"""One live `batchin serve` for every console browser test in the session (loading it once), with
a local SMTP server and the local Stripe fake, and the steps each browser test repeats: an invite,
signing up through the form, signing in.

The same server is both entries: http://127.0.0.1:PORT (`base`) is the global entry, as an unmapped
host is, and http://localhost:PORT (`china_base`) the China entry (BATCHIN_ENTRIES maps the host)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from tests.console.chromium import Browser
from tests.fakes.smtp_server import Mailbox, running_smtp
from tests.fakes.stripe_server import FakeStripe, running_fake_stripe, signature_header
from tests.live_server import BATCHIN, free_port, wait_healthy

STRIPE_KEY = "sk_test_console"
WEBHOOK_SECRET = "whsec_console"
PASSWORD = "a long enough password"
CHAT = "smollm2-135m-instruct"


@dataclass(frozen=True)
class Site:
    base: str
    env: dict[str, str]
    mailbox: Mailbox
    stripe: FakeStripe

    @property
    def china_base(self) -> str:
        """The same server reached through the China entry (Chinese, CNY, Alipay and WeChat Pay)."""
        return self.base.replace("//127.0.0.1:", "//localhost:")


@contextmanager
def running_console_site(root: Path) -> Iterator[Site]:
    """A live server with invite signup, SMTP and Stripe pointed at local fakes."""
    with running_smtp() as mailbox, running_fake_stripe(STRIPE_KEY) as stripe:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHIN_")}
        env.update(
            BATCHIN_DATA_DIR=str(root / "data"),
            BATCHIN_SIGNUP="invite",
            BATCHIN_SMTP_URL=mailbox.url,
            BATCHIN_STRIPE_SECRET_KEY=STRIPE_KEY,
            BATCHIN_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
            BATCHIN_STRIPE_API_BASE=stripe.url,
            BATCHIN_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
            BATCHIN_ENTRIES="localhost=china",
        )
        log = root / "serve.log"
        with log.open("wb") as out:
            server = subprocess.Popen(
                [str(BATCHIN), "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            try:
                base = f"http://127.0.0.1:{port}"
                wait_healthy(base, server, log)
                yield Site(base, env, mailbox, stripe)
            finally:
                server.terminate()
                server.wait(timeout=30)


def invite(site: Site) -> str:
    made = subprocess.run(
        [str(BATCHIN), "invites", "create"],
        env=site.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    codes: list[str] = json.loads(made.stdout)["invites"]
    return codes[0]


def sign_up(browser: Browser, site: Site, email: str, *, base: str | None = None) -> str:
    """Open an account through the signup form at `base` (default: the global entry), in English;
    the API key the page shows once."""
    browser.goto(f"{base or site.base}/console/signup?lang=en")
    browser.fill("#email", email)
    browser.fill("#password", PASSWORD)
    browser.fill("#name", "Grace")
    browser.fill("#invite", invite(site))
    browser.click("#sign-up")
    return browser.text("#new-secret").strip()


def sign_in(browser: Browser, site: Site, email: str, *, base: str | None = None) -> None:
    """Sign in through the form, at `base` (default: the global entry)."""
    base = base or site.base
    browser.goto(f"{base}/console/login")
    browser.fill("#email", email)
    browser.fill("#password", PASSWORD)
    browser.click("#sign-in")
    assert browser.url == f"{base}/console/overview"


def deliver_stripe_event(site: Site, event: dict[str, Any]) -> None:
    """POST a Stripe event to the server's webhook, signed as Stripe signs it; it must be taken."""
    payload = json.dumps(event).encode()
    delivered = httpx2.post(
        f"{site.base}/v1/topup/stripe/webhook",
        content=payload,
        headers={
            "Stripe-Signature": signature_header(payload, WEBHOOK_SECRET),
            "Content-Type": "application/json",
        },
    )
    assert delivered.status_code == 200, delivered.text


def new_checkout_session(stripe: FakeStripe, before: set[str]) -> tuple[str, dict[str, Any]]:
    """The Checkout session created since `before` (the fake is shared by the session's tests)."""
    deadline = time.monotonic() + 20
    while not (new := set(stripe.sessions) - before):
        assert time.monotonic() < deadline, "the console created no Checkout session"
        time.sleep(0.05)
    (session_id,) = new
    return session_id, stripe.sessions[session_id]
