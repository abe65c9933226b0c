"""Screenshots of the web console for the docs (docs/reference/console.mdx shows them):
docs/images/console/<page>.png in English, <page>-zh.png in Chinese for the pages in ZH_PAGES.

    PYTHONPATH=$PWD .venv/bin/python scripts/console_screenshots.py [--out DIR]

It needs the machine's Chromium and the dev extras (it starts the console tests' live server,
tests/console/live_site.py, with its local SMTP and Stripe fakes, in a temporary folder). It opens
a USD account through the signup form, gives it a history (keys, calls to two models, a paid
top-up, a finished batch, a prompt registry with two versions and a label move), then captures every
page the console's navigation links to, so a page added to the navigation is captured on the next
run with no change here, and three pages the navigation reaches only through a list: a chat call's
receipt (once the browser has verified it), its trace's waterfall and the prompt registry; then a
CNY account on the China entry for the Chinese pictures (they need a Chinese font: apt-get install
fonts-wqy-microhei).
Each picture is 1280 px wide, at most MAX_HEIGHT tall, reduced to 256 colours (text stays crisp,
files stay small: each under MAX_BYTES). Takes a few minutes (models load, a batch runs).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.console.chromium import Browser  # noqa: E402
from tests.console.live_site import CHAT, WEBHOOK_SECRET, Site, running_console_site, sign_in, sign_up  # noqa: E402
from tests.fakes.stripe_server import signature_header  # noqa: E402

EMBEDDING = "all-MiniLM-L6-v2"
REGISTRY = "support"
ZH_PAGES = ("overview", "usage")  # also captured in Chinese (<page>-zh.png)
PUBLIC_PAGES = ("signup",)  # captured signed out
WIDTH, HEIGHT, MAX_HEIGHT = 1280, 800, 1400
BATCH_TASKS = 8
MAX_BYTES = 200 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "console")
    out: Path = parser.parse_args().out
    fc_list = shutil.which("fc-list")
    if ZH_PAGES and not (
        fc_list and subprocess.run([fc_list, ":lang=zh"], capture_output=True, text=True, check=False).stdout  # noqa: S603
    ):
        sys.exit(
            "no Chinese font: the Chinese pictures would show boxes (apt-get install fonts-wqy-microhei)"
        )
    with tempfile.TemporaryDirectory() as tmp, running_console_site(Path(tmp)) as site:
        browser = Browser(Path(tmp) / "profile", width=WIDTH, height=HEIGHT)
        try:
            for page in PUBLIC_PAGES:
                capture(browser, f"{site.base}/console/{page}?lang=en", out / f"{page}.png")
            api_key = open_account(browser, site, site.base, "ada@example.com", "card")
            record_id = make_history(site, api_key, full=True)
            make_prompt_registry(browser, site)
            pages = nav_pages(browser, site)
            for name, href in pages:
                capture(browser, f"{site.base}{href}?lang=en", out / f"{name}.png")
            for name, href, ready in detail_pages(browser, site, record_id):
                capture(browser, f"{site.base}{href}?lang=en", out / f"{name}.png", ready=ready)
            # The Chinese pictures: a CNY account on the China entry, as a visitor there sees it.
            api_key = open_account(browser, site, site.china_base, "lilei@example.cn", "alipay")
            make_history(site, api_key, full=False)
            for name, href in pages:
                if name in ZH_PAGES:
                    capture(browser, f"{site.china_base}{href}?lang=zh", out / f"{name}-zh.png")
        finally:
            browser.close()


def open_account(browser: Browser, site: Site, base: str, email: str, pay_with: str) -> str:
    """An account opened through the signup form at `base` (its entry sets the currency), verified,
    signed in and topped up through Stripe Checkout paid with `pay_with`; its first API key."""
    api_key = sign_up(browser, site, email, base=base)
    browser.goto(site.mailbox.verification_link(email))
    sign_in(browser, site, email, base=base)
    browser.goto(f"{base}/console/billing")
    browser.fill("#amount", "25")
    before = set(site.stripe.sessions)
    browser.click("#checkout", navigates=False)
    deadline = time.monotonic() + 30
    while not (new := set(site.stripe.sessions) - before):
        if time.monotonic() > deadline:
            raise RuntimeError("the console created no Checkout session")
        time.sleep(0.05)
    payload = json.dumps(site.stripe.complete(new.pop(), pay_with)).encode()
    httpx2.post(
        f"{site.base}/v1/topup/stripe/webhook",
        content=payload,
        headers={
            "Stripe-Signature": signature_header(payload, WEBHOOK_SECRET),
            "Content-Type": "application/json",
        },
    ).raise_for_status()
    return api_key


def make_history(site: Site, api_key: str, *, full: bool) -> str:
    """Calls to show in the charts and log; `full`: also two more keys with budgets, embeddings and
    a finished batch. The first chat call's audit record id (its receipt, traced)."""
    with httpx2.Client(base_url=site.base, timeout=600) as http:
        keys = [api_key]
        for name, budget in (("backend", 1500), ("nightly-batches", 500)) if full else ():
            made = http.post(
                "/v1/keys",
                json={"name": name, "monthly_budget_cents": budget, "rate_limit_rpm": 120},
                headers={"Authorization": f"Bearer {api_key}"},
            )
            made.raise_for_status()
            keys.append(made.json()["key"])
        questions = ("What is a receipt?", "Say hello.", "Name a colour.", "Count to three.", "Hi!")
        record_ids = []
        for i, question in enumerate(questions if full else questions[:2]):
            chat = http.post(
                "/v1/chat/completions",
                json={"model": CHAT, "messages": [{"role": "user", "content": question}], "max_tokens": 24},
                headers={"Authorization": f"Bearer {keys[i % len(keys[:2])]}"},
            )
            chat.raise_for_status()
            record_ids.append(chat.headers["X-VaaS-Record-Id"])
        if not full:
            return record_ids[0]
        for text in ("a receipt for every call", "batches at half price"):
            http.post(
                "/v1/embeddings",
                json={"model": EMBEDDING, "input": text},
                headers={"Authorization": f"Bearer {keys[1]}"},
            ).raise_for_status()
        tasks = [
            {
                "custom_id": f"row-{i}",
                "model": CHAT,
                "request_body": {
                    "messages": [{"role": "user", "content": f"Summarise item {i}."}],
                    "max_tokens": 8,
                },
            }
            for i in range(BATCH_TASKS)
        ]
        batch_auth = {"Authorization": f"Bearer {keys[2]}"}
        created = http.post("/v1/batches", json={"tasks": tasks}, headers=batch_auth)
        created.raise_for_status()
        batch_id = created.json()["id"]
        deadline = time.monotonic() + 600
        while http.get(f"/v1/batches/{batch_id}", headers=batch_auth).json()["status"] not in (
            "completed",
            "failed",
            "cancelled",
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the batch did not finish")
            time.sleep(0.5)
    return record_ids[0]


def make_prompt_registry(browser: Browser, site: Site) -> None:
    """A prompt registry with two versions, its `promoted` label moved from the first to the second.
    The signup key lacks prompts:write and a key cannot grant a scope it lacks, so the key comes from
    the console's key form (the signed-in person may grant any scope)."""
    browser.goto(f"{site.base}/console/keys?lang=en")
    browser.fill("#key-name", "prompt-registry")
    browser.check('input[name="scopes"][value="prompts:write"]')
    browser.click("#create-key")
    auth = {"Authorization": f"Bearer {browser.text('#new-secret').strip()}"}
    with httpx2.Client(base_url=site.base, timeout=60) as http:
        for version, template in (
            ("v1", "You answer support questions about {{product}}."),
            ("v2", "You answer support questions about {{product}} briefly, citing the docs page."),
        ):
            http.post(
                "/v1/prompts",
                json={
                    "registry_id": REGISTRY,
                    "version": version,
                    "template": template,
                    "display_name": "Support assistant",
                },
                headers=auth,
            ).raise_for_status()
        http.post(
            f"/v1/prompts/{REGISTRY}/labels",
            json={"action": "promote", "version_id": f"{REGISTRY}@v2", "reason": "shorter answers in review"},
            headers=auth,
        ).raise_for_status()


def detail_pages(browser: Browser, site: Site, record_id: str) -> list[tuple[str, str, str | None]]:
    """(name, href, ready) of the pages reached through a list rather than the navigation: a receipt
    (`ready`: the browser has found it valid), the waterfall of its call's trace, the prompt registry."""
    receipt = f"/console/receipts/{record_id}"
    browser.goto(f"{site.base}{receipt}?lang=en")
    trace: str = browser.eval("document.getElementById('trace-link').getAttribute('href')")
    return [
        ("receipt", receipt, "document.getElementById('verdict').dataset.state === 'valid'"),
        ("trace", trace, None),
        ("prompt", f"/console/prompts/{REGISTRY}", None),
    ]


def nav_pages(browser: Browser, site: Site) -> list[tuple[str, str]]:
    """(name, href) of every page the signed-in console's navigation links to, in its order."""
    browser.goto(f"{site.base}/console/overview?lang=en")
    hrefs: list[str] = browser.eval(
        "Array.from(document.querySelectorAll('header nav a')).map(a => a.getAttribute('href'))"
    )
    return [(href.rstrip("/").rsplit("/", 1)[-1], href) for href in hrefs]


def capture(browser: Browser, url: str, path: Path, *, ready: str | None = None) -> None:
    """`url` as a PNG at `path`; `ready`: a script expression awaited first (what the page's own
    script fills in after loading)."""
    browser.goto(url)
    if ready:
        browser.wait_for(ready)
    browser.eval("document.fonts.ready.then(() => true)")
    raw = path.with_suffix(".raw.png")
    browser.screenshot(raw)
    try:
        with Image.open(raw) as shot:
            image = shot.convert("RGB")
    finally:
        raw.unlink()
    if image.height > MAX_HEIGHT:
        image = image.crop((0, 0, image.width, MAX_HEIGHT))
    buffer = io.BytesIO()
    image.quantize(colors=256, dither=Image.Dither.NONE).save(buffer, format="PNG", optimize=True)
    if buffer.tell() > MAX_BYTES:
        raise RuntimeError(f"{path.name} is {buffer.tell()} bytes, over {MAX_BYTES}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    print(f"{shown}: {image.width}x{image.height}, {buffer.tell() // 1024} KB")


if __name__ == "__main__":
    main()
