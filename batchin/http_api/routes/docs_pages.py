"""The docs for people and agents at the same addresses: /docs and /zh/docs are HTML pages (with
navigation, search over the page list and highlighted code), /docs/{page}.md the MDX source as
ever. A bare /docs/{page} answers HTML to a browser (its Accept names text/html above Markdown and
plain text) and the Markdown to everyone else, so agents, curl and links in API answers keep
getting what they always got.

Chinese pages are at /zh/docs/...: the translation where there is one, else the English page with
a note in Chinese (HTML only: /zh/docs/{page}.md is a translation or 404).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Self

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from batchin.core.site_docs import SiteDocs
from batchin.errors import NotFound
from batchin.http_api.docs_site.render import highlight_css
from batchin.http_api.docs_site.site import DocsSite, docs_href
from batchin.http_api.endpoint import Endpoint
from batchin.http_api.language import Language, choose_language
from batchin.http_api.routes.discovery import DiscoveryDeps, markdown_page
from batchin.services import Services

__all__ = ["ENDPOINTS", "wants_html"]

# The pages' own scripts and styles only: no inline code, nothing from another origin.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_HTML_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "public, max-age=300",
}
_ASSETS = {
    "docs.css": "text/css; charset=utf-8",
    "docs.js": "text/javascript; charset=utf-8",
    "highlight.css": "text/css; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class DocsPagesDeps:
    """The rendered site (its page cache lives as long as the process) and the Markdown routes' deps."""

    site: DocsSite
    discovery: DiscoveryDeps

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(site=_site(SiteDocs.locate()), discovery=DiscoveryDeps.from_services(services))


@cache
def _site(docs: SiteDocs) -> DocsSite:
    # One per folder of docs, shared by every route here (each route builds its own deps): the pages
    # are the files', whoever's services ask, so rendering them once per process is enough.
    return DocsSite(docs)


def wants_html(request: Request) -> bool:
    """True when the Accept header ranks text/html (or XHTML) above Markdown and plain text, as
    browsers' do; `*/*`, no header and text/markdown all mean the source."""
    best: dict[str, float] = {}
    for item in request.headers.get("accept", "").split(","):
        media, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.strip().lower()
        best[media] = max(best.get(media, 0.0), quality)
    html = max(best.get("text/html", 0.0), best.get("application/xhtml+xml", 0.0))
    return html > 0 and html >= max(best.get("text/markdown", 0.0), best.get("text/plain", 0.0))


def _language(request: Request) -> Language:
    # The path alone decides (see http_api/language.py): /zh/docs is Chinese, /docs English.
    return choose_language("zh" if request.url.path.startswith("/zh/") else "en")


def _html(body: str, language: Language, *, vary: bool = False) -> Response:
    headers = {**_HTML_HEADERS, "Content-Language": "zh-Hans" if language == "zh" else "en"}
    if vary:
        headers["Vary"] = "Accept"
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


async def get_docs_index(request: Request, deps: DocsPagesDeps) -> Response:
    language = _language(request)
    return _html(await asyncio.to_thread(deps.site.index_html, language), language)


async def get_docs_page(request: Request, deps: DocsPagesDeps) -> Response:
    path: str = request.path_params["path"]
    language = _language(request)
    bare = not path.endswith((".md", ".mdx"))
    if bare and (path == "" or path.endswith("/")) and wants_html(request):
        return RedirectResponse(docs_href(language, path.strip("/")), status_code=308)
    if bare and wants_html(request):
        return _html(await asyncio.to_thread(deps.site.page_html, language, path), language, vary=True)
    response = markdown_page(request, deps.discovery, path, language)
    if bare:
        response.headers["Vary"] = "Accept"
    return response


async def get_docs_search_index(request: Request, deps: DocsPagesDeps) -> Response:
    body = await asyncio.to_thread(deps.site.search_index, _language(request))
    return Response(body, media_type="application/json", headers=_HTML_HEADERS)


@cache
def _asset(name: str) -> bytes | None:
    # Called only with a key of _ASSETS, so this cache holds at most those few files.
    if name == "highlight.css":
        return highlight_css().encode()
    file = resources.files("batchin.http_api.docs_site").joinpath("static", name)
    return file.read_bytes() if file.is_file() else None


async def get_docs_asset(request: Request) -> Response:
    name = request.path_params["name"]
    media_type = _ASSETS.get(name)
    body = _asset(name) if media_type is not None else None
    if media_type is None or body is None:
        raise NotFound(f"No asset named '{name[:100]}'.")
    return Response(body, media_type=media_type, headers=_HTML_HEADERS)


async def get_docs_image(request: Request, deps: DocsPagesDeps) -> Response:
    body = await asyncio.to_thread(deps.site.image, request.path_params["path"])
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=300"}
    return Response(body, media_type="image/png", headers=headers)


def _endpoint(
    path: str,
    handler: Callable[[Request, DocsPagesDeps], Awaitable[Response]],
    summary: str,
    content_type: str,
    *,
    extra_paths: tuple[str, ...],
    other_content_types: tuple[str, ...] = (),
) -> Endpoint:
    return Endpoint(
        "GET",
        path,
        handler,
        summary,
        public=True,
        deps=DocsPagesDeps,
        content_type=content_type,
        other_content_types=other_content_types,
        errors=(404,),
        tag="discovery",
        extra_paths=extra_paths,
    )


# Listed before any other /docs route would be: /docs/search.json, /docs/assets/ and /docs/images/
# are not pages.
# Each has its Simplified Chinese twin under /zh/ (the same handler: the path names the language).
ENDPOINTS = [
    _endpoint(
        "/docs",
        get_docs_index,
        "The docs as HTML: every page by section (/zh/docs: in Simplified Chinese).",
        "text/html",
        extra_paths=("/zh/docs",),
    ),
    _endpoint(
        "/docs/search.json",
        get_docs_search_index,
        "The docs pages' titles, descriptions and headings, for the pages' search box.",
        "application/json",
        extra_paths=("/zh/docs/search.json",),
    ),
    Endpoint(
        "GET",
        "/docs/assets/{name}",
        get_docs_asset,
        "The docs pages' scripts and styles.",
        public=True,
        content_type="text/css",
        errors=(404,),
        tag="discovery",
    ),
    Endpoint(
        "GET",
        "/docs/images/{path:path}",
        get_docs_image,
        "The pictures the docs pages show (PNG), e.g. the console's screenshots.",
        public=True,
        deps=DocsPagesDeps,
        content_type="image/png",
        errors=(404,),
        tag="discovery",
    ),
    _endpoint(
        "/docs/{path:path}",
        get_docs_page,
        "A docs page: Markdown (MDX source) at /docs/{page}.md; at /docs/{page}, HTML for a browser "
        "(Accept: text/html) and Markdown for anyone else. Under /zh/docs/ the same in Simplified "
        "Chinese: the translation, or as HTML the English page with a note (no translation: no .md).",
        "text/markdown",
        other_content_types=("text/html",),
        extra_paths=("/zh/docs/{path:path}",),
    ),
]
