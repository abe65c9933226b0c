"""The docs pages in real headless Chromium against a live server: the page loads with its own
script under its CSP, the search box finds a page by a word of its headings and Enter opens it,
and a code block's copy button puts exactly that code on the clipboard, in English and Chinese."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.docs.cdp import CHROMIUM, open_page
from tests.docs.conftest import Live

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _chromium() -> None:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium): this test needs a real browser")


async def test_search_and_copy_in_chromium(live: Live, tmp_path: Path) -> None:
    async with open_page(live.base_url, tmp_path / "profile") as page:
        await page.goto(f"{live.base_url}/docs/quickstart")
        assert await page.evaluate("document.title") == "Quick start · BatchIn docs"
        # The script ran: the search form is shown and every code block has its button.
        await page.wait_for("!document.querySelector('form.search').hidden")
        blocks = await page.evaluate("document.querySelectorAll('div.code').length")
        assert blocks > 3
        assert await page.evaluate("document.querySelectorAll('div.code > button.copy').length") == blocks

        await page.evaluate("document.getElementById('docs-search').focus()")
        await page.type_text("server-sent")
        hrefs = await page.wait_for(
            "Array.from(document.querySelectorAll('#search-results a')).map(a => a.getAttribute('href'))"
        )
        assert "/docs/tutorials/streaming-chat" in hrefs, hrefs  # found by its description
        assert await page.evaluate("document.getElementById('search-status').textContent") != ""
        await page.press_enter()
        await page.wait_for("location.pathname === '/docs/tutorials/streaming-chat'")
        await page.wait_for("document.readyState === 'complete' && !!document.querySelector('button.copy')")
        heading = await page.evaluate("document.querySelector('h1').textContent")
        assert heading == "Streaming chat with the OpenAI SDK"

        code = await page.evaluate("document.querySelector('div.code code').textContent")
        await page.click("div.code button.copy")
        await page.wait_for("document.querySelector('div.code button.copy').textContent !== 'Copy'")
        assert await page.evaluate("document.querySelector('div.code button.copy').textContent") == "Copied"
        assert await page.evaluate("navigator.clipboard.readText()") == code

        await page.goto(f"{live.base_url}/zh/docs/quickstart")
        assert await page.evaluate("document.documentElement.lang") == "zh-Hans"
        await page.wait_for("!!document.querySelector('button.copy')")
        assert await page.evaluate("document.querySelector('button.copy').textContent") == "复制"
        await page.evaluate("document.getElementById('docs-search').focus()")
        await page.type_text("用量")
        titles = await page.wait_for(
            "Array.from(document.querySelectorAll('#search-results a')).map(a => a.firstChild.textContent)"
        )
        assert any("用量" in title for title in titles), json.dumps(titles, ensure_ascii=False)
