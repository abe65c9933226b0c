"""The docs pages in real headless Chromium against a live server: the page loads with its own
script under its CSP, the search box finds a page by a word of its headings and Enter opens it,
and a code block's copy button puts exactly that code on the clipboard, in English and Chinese."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.console.chromium import CHROMIUM, Browser
from tests.docs.conftest import Live

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _chromium() -> None:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium): this test needs a real browser")


async def test_search_and_copy_in_chromium(live: Live, tmp_path: Path) -> None:
    browser = Browser(tmp_path / "profile")
    try:
        # The server runs on this test's event loop: the (blocking) driver runs in a thread.
        await asyncio.to_thread(_search_and_copy, browser, live.base_url)
    finally:
        browser.close()


def _search_and_copy(page: Browser, base: str) -> None:
    page.allow_clipboard(base)
    page.goto(f"{base}/docs/quickstart")
    assert page.eval("document.title") == "Quick start · BatchIn docs"
    # The script ran: the search form is shown and every code block has its button.
    page.wait_for("!document.querySelector('form.search').hidden")
    blocks = page.eval("document.querySelectorAll('div.code').length")
    assert blocks > 3
    assert page.eval("document.querySelectorAll('div.code > button.copy').length") == blocks

    page.eval("document.getElementById('docs-search').focus()")
    page.type_text("server-sent")
    hrefs = page.wait_for(
        "Array.from(document.querySelectorAll('#search-results a')).map(a => a.getAttribute('href'))"
    )
    assert "/docs/tutorials/streaming-chat" in hrefs, hrefs  # found by its description
    assert page.eval("document.getElementById('search-status').textContent") != ""
    page.press_enter()
    page.wait_for("location.pathname === '/docs/tutorials/streaming-chat'")
    page.wait_for("document.readyState === 'complete' && !!document.querySelector('button.copy')")
    assert page.eval("document.querySelector('h1').textContent") == "Streaming chat with the OpenAI SDK"

    code = page.eval("document.querySelector('div.code code').textContent")
    page.click("div.code button.copy", navigates=False)
    page.wait_for("document.querySelector('div.code button.copy').textContent !== 'Copy'")
    assert page.eval("document.querySelector('div.code button.copy').textContent") == "Copied"
    assert page.eval("navigator.clipboard.readText()") == code

    page.goto(f"{base}/zh/docs/quickstart")
    assert page.eval("document.documentElement.lang") == "zh-Hans"
    page.wait_for("!!document.querySelector('button.copy')")
    assert page.eval("document.querySelector('button.copy').textContent") == "复制"
    page.eval("document.getElementById('docs-search').focus()")
    page.type_text("用量")
    titles = page.wait_for(
        "Array.from(document.querySelectorAll('#search-results a')).map(a => a.firstChild.textContent)"
    )
    assert any("用量" in title for title in titles), json.dumps(titles, ensure_ascii=False)
