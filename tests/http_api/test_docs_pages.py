"""The docs as HTML pages (/docs, /zh/docs): every page renders well-formed, its links among pages
and to headings resolve, its code is highlighted, the search index lists every page; the Chinese
pages exist and fall back to English with a note; the Markdown stays what it was for agents."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx2
import pytest

from batchin.core.site_docs import SiteDocs, absolute_links
from batchin.http_api.language import choose_language
from tests.docs.mdx import code_blocks
from tests.http_api.html_check import PageParts, read_html
from tests.http_api.test_discovery import BASE, parse_llms_txt

SITE = SiteDocs.locate()
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
PREFIXES = {"en": "/docs", "zh": "/zh/docs"}
ASSET_BUDGET = 300 * 1024  # a page and everything it loads


async def fetch_pages(client: httpx2.AsyncClient, language: str) -> dict[str, tuple[str, PageParts]]:
    """Every page's HTML in `language`, keyed by its URL (the index as the bare prefix)."""
    prefix = PREFIXES[language]
    pages = {}
    for url in [prefix, *(f"{prefix}/{page}" for page in SITE.pages())]:
        response = await client.get(url, headers=BROWSER)
        assert response.status_code == 200, (url, response.text[:300])
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        pages[url] = (response.text, read_html(response.text))
    return pages


@pytest.mark.parametrize("language", ["en", "zh"])
async def test_every_page_renders_well_formed(client: httpx2.AsyncClient, language: str) -> None:
    for url, (text, parts) in (await fetch_pages(client, language)).items():
        assert parts.errors == [], (url, parts.errors[:5])
        assert parts.html_lang == ("zh-Hans" if language == "zh" else "en"), url
        assert "<h1" in text, url
        assert len(parts.ids) == len(set(parts.ids)), f"{url}: duplicate ids"
        assert parts.scripts == ["/docs/assets/docs.js"], url  # no inline script, nothing remote


@pytest.mark.parametrize("language", ["en", "zh"])
async def test_links_among_pages_and_to_headings_resolve(client: httpx2.AsyncClient, language: str) -> None:
    pages = await fetch_pages(client, language)
    checked = 0
    for url, (_, parts) in pages.items():
        for link in parts.links:
            target = urlsplit(link)
            if target.scheme or target.netloc:
                continue  # the pages' few links to other sites
            path = target.path or url
            if path in pages:
                if target.fragment:
                    assert target.fragment in pages[path][1].ids, f"{url} links to a missing heading: {link}"
            else:  # the other language's pages, llms.txt, the Markdown sources, public documents
                response = await client.get(path, headers=BROWSER)
                assert response.status_code == 200, f"{url} links to {link}: {response.status_code}"
            checked += 1
    assert checked > 100


async def test_links_stay_in_the_readers_language(client: httpx2.AsyncClient) -> None:
    parts = read_html((await client.get("/zh/docs/quickstart", headers=BROWSER)).text)
    assert "/zh/docs/api-reference" in parts.links  # an English page, shown at its Chinese address
    assert "/docs/api-reference" not in parts.links
    assert "/docs/quickstart" in parts.links  # the switch to English


async def test_code_blocks_are_highlighted(client: httpx2.AsyncClient) -> None:
    pages = await fetch_pages(client, "en")
    for page in SITE.pages():
        blocks = code_blocks(SITE.page(page))
        parts = pages[f"/docs/{page}"][1]
        assert parts.code_languages == [b.language for b in blocks], page
        if any(b.language in ("python", "bash", "json") for b in blocks):
            assert parts.highlighted_spans > 0, page


@pytest.mark.parametrize("language", ["en", "zh"])
async def test_search_index_lists_every_page_and_its_headings(
    client: httpx2.AsyncClient, language: str
) -> None:
    response = await client.get(f"{PREFIXES[language]}/search.json")
    assert response.status_code == 200
    index = response.json()
    assert index["language"] == language
    assert sorted(entry["path"] for entry in index["pages"]) == SITE.pages()
    pages = await fetch_pages(client, language)
    for entry in index["pages"]:
        assert entry["href"] == f"{PREFIXES[language]}/{entry['path']}"
        assert entry["title"], entry["path"]
        ids = pages[entry["href"]][1].ids
        for _, anchor in entry["headings"]:
            assert anchor in ids, (entry["path"], anchor)
    streaming = next(e for e in index["pages"] if e["path"] == "tutorials/streaming-chat")
    assert streaming["headings"], "the headings of a page are searchable"


async def test_page_and_assets_stay_under_the_budget(client: httpx2.AsyncClient) -> None:
    for url, (text, parts) in (await fetch_pages(client, "en")).items():
        total = len(text.encode())
        for asset in [*parts.scripts, *parts.styles]:
            response = await client.get(asset)
            assert response.status_code == 200, asset
            total += len(response.content)
        assert total < ASSET_BUDGET, (url, total)


async def test_pages_allow_only_their_own_scripts(client: httpx2.AsyncClient) -> None:
    response = await client.get("/docs/quickstart", headers=BROWSER)
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["vary"] == "Accept"
    assert (await client.get("/docs/assets/nope.js")).status_code == 404
    assert (await client.get("/docs/assets/docs.js")).headers["content-type"].startswith("text/javascript")


# -- the Chinese pages -----------------------------------------------------------------------------


async def test_translated_page_is_chinese(client: httpx2.AsyncClient) -> None:
    response = await client.get("/zh/docs/quickstart", headers=BROWSER)
    assert response.headers["content-language"] == "zh-Hans"
    assert '<h1 id="快速开始">快速开始</h1>' in response.text
    assert "本页尚无中文版" not in response.text
    assert "复制" in response.text  # the copy button's label for the script


async def test_untranslated_page_is_english_with_a_note_in_chinese(client: httpx2.AsyncClient) -> None:
    text = (await client.get("/zh/docs/tools", headers=BROWSER)).text
    assert "本页尚无中文版，以下为英文原文。" in text  # noqa: RUF001 - Chinese punctuation
    assert '<article lang="en">' in text
    assert '<h1 id="tool-calling">Tool calling</h1>' in text


async def test_chinese_index_and_markdown(client: httpx2.AsyncClient) -> None:
    index = (await client.get("/zh/docs", headers=BROWSER)).text
    assert "BatchIn 文档" in index
    assert "快速开始" in index
    markdown = await client.get("/zh/docs/quickstart.md")
    assert markdown.headers["content-type"] == "text/markdown; charset=utf-8"
    source = (SITE.docs_dir / "zh" / "quickstart.mdx").read_text(encoding="utf-8")
    assert markdown.text == absolute_links(source, BASE)
    assert (await client.get("/zh/docs/tools.md")).status_code == 404  # no translation: no Chinese source
    assert (await client.get("/docs/zh/quickstart.md")).status_code == 404  # not an English page


async def test_chinese_llms_txt_follows_the_format_and_links_resolve(client: httpx2.AsyncClient) -> None:
    response = await client.get("/zh/llms.txt")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    llms = parse_llms_txt(response.text)
    assert llms.title == "BatchIn"
    assert list(llms.sections)[-1] == "Optional"
    links = {url for section in llms.sections.values() for _, url in section}
    translated = SITE.pages("zh")
    assert "quickstart" in translated
    for page in SITE.pages():  # each page once: its translation where there is one
        assert f"{BASE}{'/zh' if page in translated else ''}/docs/{page}.md" in links, page
    for url in links:
        assert (await client.get(url.removeprefix(BASE))).status_code == 200, url


async def test_llms_txt_is_english_whatever_the_client_prefers(client: httpx2.AsyncClient) -> None:
    plain = (await client.get("/llms.txt")).text
    chinese_client = await client.get("/llms.txt", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert chinese_client.text == plain
    assert "/zh/llms.txt" in plain


# -- the Markdown for agents -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "accept",
    [None, "*/*", "text/markdown", "text/plain", "text/markdown, text/html;q=0.5", "application/json"],
)
async def test_bare_page_is_markdown_unless_html_is_preferred(
    client: httpx2.AsyncClient, accept: str | None
) -> None:
    headers = {"Accept": accept} if accept is not None else {}
    response = await client.get("/docs/quickstart", headers=headers)
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    assert response.text.startswith("---\ntitle: ")
    assert response.headers["vary"] == "Accept"


async def test_md_suffix_is_markdown_even_for_a_browser(client: httpx2.AsyncClient) -> None:
    response = await client.get("/docs/tutorials/batches.md", headers=BROWSER)
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    source = (SITE.docs_dir / "tutorials" / "batches.mdx").read_text(encoding="utf-8")
    assert response.text == absolute_links(source, BASE)


async def test_a_browser_at_docs_slash_goes_to_the_index(client: httpx2.AsyncClient) -> None:
    response = await client.get("/docs/", headers=BROWSER)
    assert response.status_code == 308
    assert response.headers["location"] == "/docs"
    assert (await client.get("/docs/nope", headers=BROWSER)).status_code == 404


# -- the one language rule -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("explicit", "accept_language", "expected"),
    [
        ("zh", "en", "zh"),
        ("en", "zh-CN", "en"),
        (None, None, "en"),
        (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        (None, "en-US,en;q=0.9,zh;q=0.8", "en"),
        (None, "fr-FR, zh-Hans;q=0.5", "zh"),
        (None, "zh;q=0, en;q=0.1", "en"),
        (None, "de, fr", "en"),
        ("xx", "zh-TW", "zh"),
        (None, "zh;q=abc", "en"),
    ],
)
def test_choose_language(explicit: str | None, accept_language: str | None, expected: str) -> None:
    assert choose_language(explicit, accept_language) == expected
