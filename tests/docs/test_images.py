"""The pictures the docs show (docs/images/, e.g. the console's screenshots): every one a page links
is served as a PNG at the address the page gives, the HTML page shows it, the Markdown for agents
still names it (with an absolute address), and nothing but a PNG under docs/images/ is ever read."""

from __future__ import annotations

import re

import httpx2
import pytest

from batchin.core.site_docs import SiteDocs

SITE = SiteDocs.locate()
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
# ![alt](/docs/images/...png) as the sources write it.
_IMAGE_LINK = re.compile(r"!\[[^\]]+\]\((/docs/images/[^)\s]+\.png)\)")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def linked_images() -> dict[str, list[str]]:
    """Page path (and zh/ for a translation) → the images its source links."""
    found = {page: _IMAGE_LINK.findall(SITE.page(page)) for page in SITE.pages()}
    found |= {f"zh/{page}": _IMAGE_LINK.findall(SITE.page(page, "zh")) for page in SITE.pages("zh")}
    return {page: images for page, images in found.items() if images}


def test_the_console_page_shows_screenshots() -> None:
    assert len(linked_images().get("reference/console", [])) >= 5


async def test_every_linked_image_is_served_as_a_small_png(client: httpx2.AsyncClient) -> None:
    for page, images in linked_images().items():
        for src in images:
            response = await client.get(src)
            assert response.status_code == 200, (page, src)
            assert response.headers["content-type"] == "image/png"
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.content.startswith(PNG_SIGNATURE), src
            assert len(response.content) < 200 * 1024, (src, len(response.content))


async def test_html_page_shows_the_image_and_markdown_names_it(client: httpx2.AsyncClient) -> None:
    (first, *_) = linked_images()["reference/console"]
    html = await client.get("/docs/reference/console", headers=BROWSER)
    assert f'<img src="{first}"' in html.text
    assert "img-src 'self'" in html.headers["content-security-policy"]
    # For agents the link is absolute, on whatever host serves the Markdown.
    absolute = re.compile(rf"!\[[^\]]+\]\(https?://[^/)\s]+{re.escape(first)}\)")
    markdown = await client.get("/docs/reference/console.md")
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert absolute.search(markdown.text), markdown.text[:500]


@pytest.mark.parametrize(
    "path",
    [
        "/docs/images/console/nope.png",
        "/docs/images/%2e%2e/quickstart.mdx",
        "/docs/images/..%2fquickstart.png",
        "/docs/images/console/.hidden.png",
        "/docs/images/console",
        "/docs/images/",
    ],
)
async def test_only_pngs_under_docs_images_are_served(client: httpx2.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404, path
    assert not response.content.startswith(PNG_SIGNATURE)
