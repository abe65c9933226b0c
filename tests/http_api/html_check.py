"""A strict-enough reading of an HTML page for tests: every element closed in order (void
elements excepted), and the ids, links and code blocks it holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

__all__ = ["PageParts", "read_html"]

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
# End tags HTML lets a page leave out, which markdown-it never does but a reader may meet.
_OPTIONAL_END = {"p", "li", "dt", "dd", "tr", "td", "th", "thead", "tbody", "option"}


@dataclass
class PageParts:
    ids: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)
    styles: list[str] = field(default_factory=list)
    code_languages: list[str] = field(default_factory=list)
    highlighted_spans: int = 0
    html_lang: str = ""
    errors: list[str] = field(default_factory=list)


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts = PageParts()
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if "id" in found:
            self.parts.ids.append(found["id"])
        if tag == "a" and "href" in found:
            self.parts.links.append(found["href"])
        if tag == "script":
            self.parts.scripts.append(found.get("src", ""))
        if tag == "link" and found.get("rel") == "stylesheet":
            self.parts.styles.append(found["href"])
        if tag == "html":
            self.parts.html_lang = found.get("lang", "")
        if tag == "div" and "code" in found.get("class", "").split():
            self.parts.code_languages.append(found.get("data-language", ""))
        if tag == "span" and found.get("class") and "code" in self.open:
            self.parts.highlighted_spans += 1
        if tag not in _VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.open.pop()

    def handle_endtag(self, tag: str) -> None:
        while self.open and self.open[-1] != tag and self.open[-1] in _OPTIONAL_END:
            self.open.pop()
        if not self.open or self.open[-1] != tag:
            self.parts.errors.append(f"</{tag}> closes <{self.open[-1] if self.open else 'nothing'}>")
            return
        self.open.pop()


def read_html(text: str) -> PageParts:
    reader = _Reader()
    reader.feed(text)
    reader.close()
    if not text.lstrip().lower().startswith("<!doctype html>"):
        reader.parts.errors.append("no <!doctype html>")
    reader.parts.errors += [f"<{tag}> never closed" for tag in reader.open]
    return reader.parts
