"""Accessible basics on every console page, in both languages: the page says its language, every
form control has a label, every button says what it does, every chart has a text alternative; and
the stylesheet's text colours keep WCAG AA contrast (4.5:1) on the backgrounds they are used on.

The pages are the ones the signed-in navigation links to, so a page added to the nav is checked
without touching this test."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from importlib import resources

import httpx2
import pytest

from tests.conftest import MakeUser
from tests.console.conftest import form_post

_CONTROLS = {"input", "select", "textarea"}
_UNLABELLED_INPUTS = {"hidden", "submit", "button", "reset", "image"}


@dataclass
class _Control:
    tag: str
    attrs: dict[str, str]
    inside_label: bool


@dataclass
class _PageFacts(HTMLParser):
    """What the checks need from one page, collected in a single pass."""

    html_lang: str = ""
    nav_links: list[str] = field(default_factory=list)
    controls: list[_Control] = field(default_factory=list)
    label_targets: set[str] = field(default_factory=set)
    empty_buttons: list[str] = field(default_factory=list)
    unnamed_graphics: list[str] = field(default_factory=list)
    _labels_open: int = 0
    _in_nav: int = 0
    _button: list[str] | None = None
    _button_attrs: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__()

    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        attrs = {k: v or "" for k, v in attrs_list}
        if tag == "html":
            self.html_lang = attrs.get("lang", "")
        elif tag == "nav":
            self._in_nav += 1
        elif tag == "a" and self._in_nav and attrs.get("href", "").startswith("/console/"):
            self.nav_links.append(attrs["href"])
        elif tag == "label":
            self._labels_open += 1
            if "for" in attrs:
                self.label_targets.add(attrs["for"])
        elif tag in _CONTROLS:
            self.controls.append(_Control(tag, attrs, self._labels_open > 0))
        elif tag == "button":
            self._button, self._button_attrs = [], attrs
        elif tag in ("svg", "img") and attrs.get("aria-hidden") != "true":
            named = attrs.get("alt") or attrs.get("aria-label") or attrs.get("aria-labelledby")
            if tag == "img" and "alt" in attrs:  # alt="" marks a decorative image, which is allowed
                named = True
            if not named:
                self.unnamed_graphics.append(f"<{tag} {attrs}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._labels_open -= 1
        elif tag == "nav":
            self._in_nav -= 1
        elif tag == "button" and self._button is not None:
            text = "".join(self._button).strip()
            if not (text or self._button_attrs.get("aria-label")):
                self.empty_buttons.append(str(self._button_attrs))
            self._button = None

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._button.append(data)


def facts_of(html: str) -> _PageFacts:
    facts = _PageFacts()
    facts.feed(html)
    return facts


def unlabelled(facts: _PageFacts) -> list[str]:
    missing = []
    for control in facts.controls:
        attrs = control.attrs
        if control.tag == "input" and attrs.get("type", "text") in _UNLABELLED_INPUTS:
            continue
        if control.inside_label or attrs.get("aria-label") or attrs.get("aria-labelledby"):
            continue
        if attrs.get("id") in facts.label_targets:
            continue
        missing.append(f"<{control.tag} {attrs}>")
    return missing


async def test_every_console_page_has_accessible_basics(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user(credit_cents=500)
    await form_post(client, "/console/login", "/console/login/key", {"api_key": user.api_key})
    overview = await client.get("/console/overview")
    pages = sorted(set(facts_of(overview.text).nav_links))
    assert {"/console/keys", "/console/usage"} <= set(pages), pages
    for path in pages:
        for lang, expected_lang in (("en", "en"), ("zh", "zh-CN")):
            response = await client.get(f"{path}?lang={lang}")
            assert response.status_code == 200, (path, response.text[:500])
            facts = facts_of(response.text)
            assert facts.html_lang == expected_lang, path
            assert unlabelled(facts) == [], (path, lang)
            assert facts.empty_buttons == [], (path, lang)
            assert facts.unnamed_graphics == [], (path, lang)


async def test_signed_out_pages_have_labels(client: httpx2.AsyncClient) -> None:
    for path in ("/console/login", "/console/signup"):
        facts = facts_of((await client.get(path)).text)
        assert facts.controls, path
        assert unlabelled(facts) == [], path


def _luminance(hex_colour: str) -> float:
    if len(hex_colour) == 4:  # #abc is #aabbcc
        hex_colour = "#" + "".join(c * 2 for c in hex_colour[1:])
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    lighter, darker = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_contrast_formula_matches_wcag_reference_values() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)  # the AA borderline grey


def test_stylesheet_text_colours_meet_aa_contrast() -> None:
    css = resources.files("batchin.console").joinpath("static", "console.css").read_text()
    variables = dict(re.findall(r"--([a-z0-9]+):\s*(#[0-9a-fA-F]{6})", css))
    backgrounds = {"page": "#ffffff", "header and table heads": variables["bg2"]}
    for name in ("fg", "muted", "link", "err"):
        for where, background in backgrounds.items():
            ratio = contrast(variables[name], background)
            assert ratio >= 4.5, f"--{name} on the {where} background is {ratio:.2f}:1"
    button = re.search(
        r"\bbutton \{[^}]*background: (#[0-9a-f]{3,6}); color: (#[0-9a-f]{3,6})",
        css,
    )
    assert button is not None, "the button rule changed shape; check its contrast here"
    assert contrast(button.group(2), button.group(1)) >= 4.5
