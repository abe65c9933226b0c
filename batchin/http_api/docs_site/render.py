"""One MDX page's Markdown as HTML: CommonMark with tables (markdown-it-py), code highlighted on the
server by Pygments (class names only, so the page's CSP needs no inline styles), an id on every
heading, and the sources' links to `/docs/x.md` pointed at the HTML page in the reader's language.

Raw HTML and JSX in the sources are not passed through: the pages use none (MDX prose escapes
`{`, `}` and `<`), and an HTML page must not run what a Markdown file says.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

__all__ = ["Heading", "RenderedPage", "highlight_css", "render_page", "split_front_matter"]

_FORMATTER = HtmlFormatter(nowrap=True)
# `/docs/x.md#part` (or .mdx) as written in the sources, relative to the site's root.
_PAGE_LINK = re.compile(r"^/docs/(?P<page>[A-Za-z0-9/_-]+)\.mdx?(?P<anchor>#.*)?$")


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    anchor: str


@dataclass(frozen=True)
class RenderedPage:
    title: str
    description: str
    html: str
    headings: tuple[Heading, ...]


def split_front_matter(text: str) -> tuple[dict[str, str], str]:
    """The `---` block's `key: value` lines (the pages use no other YAML) and the Markdown after it."""
    if not text.startswith("---\n") or "\n---\n" not in text[3:]:
        return {}, text
    end = text.index("\n---\n", 3)
    fields = {}
    for line in text[4:end].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip().strip('"')
    return fields, text[end + 5 :]


def highlight_css() -> str:
    return str(_FORMATTER.get_style_defs(".highlight"))


def render_page(source: str, page_href: Callable[[str], str]) -> RenderedPage:
    """`page_href` maps a page path (`tutorials/batches`) to the URL of its HTML page."""
    meta, body = split_front_matter(source)
    md = _markdown()
    env: dict[str, Any] = {"page_href": page_href, "headings": [], "slugs": set()}
    tokens = md.parse(body, env)
    _anchor_headings(tokens, env)
    _point_links_at_pages(tokens, page_href)
    return RenderedPage(
        title=meta.get("title", ""),
        description=meta.get("description", ""),
        html=md.renderer.render(tokens, md.options, env),
        headings=tuple(env["headings"]),
    )


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.add_render_rule("fence", _render_fence)
    return md


def _render_fence(self: Any, tokens: list[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    language = token.info.split(maxsplit=1)[0] if token.info.strip() else "text"
    try:
        code = highlight(token.content, get_lexer_by_name(language), _FORMATTER)
    except ClassNotFound:
        code = escape(token.content)
    label = escape(language)
    return (
        f'<div class="code" data-language="{label}">'
        f'<pre class="highlight" tabindex="0"><code class="language-{label}">{code}</code></pre></div>\n'
    )


def _slug(text: str, taken: set[str]) -> str:
    # Letters of any script stay (Chinese headings keep readable anchors); the rest becomes '-'.
    folded = unicodedata.normalize("NFKC", text.lower())
    base = "".join(ch if unicodedata.category(ch)[0] in "LN" else "-" for ch in folded)
    base = re.sub(r"-+", "-", base).strip("-") or "section"
    slug, n = base, 1
    while slug in taken:
        n += 1
        slug = f"{base}-{n}"
    taken.add(slug)
    return slug


def _anchor_headings(tokens: list[Token], env: dict[str, Any]) -> None:
    for opening, inline in itertools.pairwise(tokens):
        if opening.type != "heading_open":
            continue
        text = "".join(t.content for t in inline.children or [] if t.type in ("text", "code_inline"))
        anchor = _slug(text, env["slugs"])
        opening.attrSet("id", anchor)
        env["headings"].append(Heading(int(opening.tag[1]), text, anchor))


def _point_links_at_pages(tokens: list[Token], page_href: Callable[[str], str]) -> None:
    for token in tokens:
        for child in token.children or []:
            if child.type != "link_open":
                continue
            match = _PAGE_LINK.match(str(child.attrGet("href") or ""))
            if match is not None:
                child.attrSet("href", page_href(match["page"]) + (match["anchor"] or ""))
