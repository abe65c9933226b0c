"""The docs as HTML pages, from the same MDX files the Markdown routes serve: each page is rendered
on its first request and kept (the set of pages is fixed for the life of the process, so the cache
holds at most every page once per language). A page without a translation is the English one with
a note in the reader's language."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from importlib import resources

import jinja2
import orjson
from markupsafe import Markup

from batchin.core.site_docs import SiteDocs
from batchin.errors import NotFound
from batchin.http_api.docs_site.render import RenderedPage, render_page
from batchin.http_api.docs_site.strings import SECTION_TITLES, STRINGS
from batchin.http_api.language import LANGUAGES, Language

__all__ = ["DocsSite", "NavPage", "docs_href"]

# The pages every reader starts from, first in the navigation.
_START = ("quickstart", "api-reference")
# The pictures pages show (docs/images/...): PNG files under plain folder names, nothing else.
_IMAGE = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9_-]*/)*[A-Za-z0-9][A-Za-z0-9_-]*\.png")


def docs_href(language: Language, page: str = "") -> str:
    """The URL of a docs HTML page (the index when `page` is empty) in `language`."""
    prefix = "/docs" if language == "en" else f"/{language}/docs"
    return f"{prefix}/{page}" if page else prefix


@dataclass(frozen=True)
class NavPage:
    path: str
    title: str
    description: str
    href: str
    translated: bool  # False: shown in English on a page in another language


def _section(path: str) -> str:
    if path in _START:
        return "start"
    folder = path.split("/")[0] if "/" in path else "guides"
    return folder if folder in SECTION_TITLES["en"] else "guides"


@dataclass
class DocsSite:
    site: SiteDocs
    _templates: jinja2.Environment = field(init=False)
    _pages: dict[tuple[Language, str], RenderedPage] = field(default_factory=dict, init=False)
    _html: dict[tuple[Language, str], str] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        folder = resources.files("batchin.http_api.docs_site").joinpath("templates")
        self._templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(folder)),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    # -- pages -------------------------------------------------------------------------------------

    def image(self, path: str) -> bytes:
        """A picture under docs/images/ (`console/overview.png`), as the pages link it at
        /docs/images/...; anything that is not a PNG there is 404, never a read elsewhere."""
        folder = (self.site.docs_dir / "images").resolve()
        file = folder.joinpath(*path.split("/")).resolve() if _IMAGE.fullmatch(path) else None
        if file is None or not file.is_relative_to(folder) or not file.is_file():
            raise NotFound(f"No docs image '{path[:100]}'.")
        return file.read_bytes()

    def page_html(self, language: Language, path: str) -> str:
        """The HTML page of docs page `path`; 404 unless it is an English page."""
        key = (language, path)
        with self._lock:
            cached = self._html.get(key)
        if cached is not None:
            return cached
        if path not in self.site.pages():
            raise NotFound(f"No docs page '{path}'.")
        page, translated = self._page(language, path)
        html = self._render(
            "page.html",
            language,
            current=path,
            page=page,
            body=Markup(page.html),  # noqa: S704 - markdown-it output, raw HTML in sources escaped
            translated=translated,
            markdown_href=f"{docs_href(language if translated else 'en', path)}.md",
            other_href=docs_href(_other(language), path),
        )
        with self._lock:
            self._html[key] = html
        return html

    def index_html(self, language: Language) -> str:
        key = (language, "")
        with self._lock:
            cached = self._html.get(key)
        if cached is not None:
            return cached
        html = self._render("index.html", language, current="", other_href=docs_href(_other(language)))
        with self._lock:
            self._html[key] = html
        return html

    def search_index(self, language: Language) -> bytes:
        """Every page with its title, description and headings, for the pages' own search box."""
        entries = []
        for nav in self.nav(language):
            page, _ = self._page(language, nav.path)
            entries.append(
                {
                    "path": nav.path,
                    "href": nav.href,
                    "title": page.title,
                    "description": page.description,
                    "headings": [[h.text, h.anchor] for h in page.headings if h.level in (2, 3)],
                }
            )
        return orjson.dumps({"language": language, "pages": entries})

    def nav(self, language: Language) -> list[NavPage]:
        """Every English page, in navigation order, titled in `language` where translated."""
        order = {name: i for i, name in enumerate(SECTION_TITLES["en"])}
        paths = sorted(
            self.site.pages(),
            key=lambda p: (order[_section(p)], _START.index(p) if p in _START else 0, p),
        )
        items = []
        for path in paths:
            page, is_translated = self._page(language, path)
            items.append(
                NavPage(
                    path=path,
                    title=page.title,
                    description=page.description,
                    href=docs_href(language, path),
                    translated=is_translated,
                )
            )
        return items

    def _page(self, language: Language, path: str) -> tuple[RenderedPage, bool]:
        """The rendered page in `language`, else the English one (and False)."""
        translated = language != "en" and path in self.site.pages(language)
        source_language: Language = language if translated else "en"
        # Kept per reader language: links inside a page stay in it (an English page shown at a
        # /zh/ address links to /zh/ addresses, which show translations where there are some).
        key = (language, path)
        with self._lock:
            page = self._pages.get(key)
        if page is None:
            page = render_page(
                self.site.page(path, source_language), lambda target: docs_href(language, target)
            )
            with self._lock:
                self._pages[key] = page
        return page, language == "en" or translated

    def _render(self, template: str, language: Language, **context: object) -> str:
        sections: dict[str, list[NavPage]] = {name: [] for name in SECTION_TITLES[language]}
        for item in self.nav(language):
            sections[_section(item.path)].append(item)
        return self._templates.get_template(template).render(
            lang=language,
            html_lang="zh-Hans" if language == "zh" else "en",
            t=STRINGS[language],
            section_titles=SECTION_TITLES[language],
            sections=sections,
            home=docs_href(language),
            search_url=f"{docs_href(language)}/search.json",
            llms_href="/zh/llms.txt" if language == "zh" else "/llms.txt",
            **context,
        )


def _other(language: Language) -> Language:
    return next(other for other in LANGUAGES if other != language)
