"""The console's message catalogs (messages/en.json, messages/zh.json) and the choice of language:
`?lang=` (remembered in the `batchin_lang` cookie), else that cookie, else Accept-Language.

Every string a page shows is a key of both catalogs (tests/console/test_i18n.py checks they hold the
same keys and placeholders); a missing key shows the key itself, never a blank."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["LANGUAGES", "LANG_COOKIE", "Translator", "catalog", "choose_language"]

LANGUAGES = ("en", "zh")
LANG_COOKIE = "batchin_lang"


@cache
def catalog(lang: str) -> dict[str, str]:
    text = resources.files("batchin.console").joinpath("messages", f"{lang}.json").read_text("utf-8")
    loaded: dict[str, str] = json.loads(text)
    return loaded


def _from_accept_language(header: str) -> str | None:
    """The first listed language we have, by q-value (ties keep the header's order)."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        ranked.append((-quality, index, tag.strip().lower()))
    for negative_quality, _, tag in sorted(ranked):
        primary = tag.split("-")[0]
        if negative_quality < 0 and primary in LANGUAGES:
            return primary
    return None


def choose_language(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    for candidate in (query, cookie):
        if candidate in LANGUAGES:
            return candidate
    return _from_accept_language(accept_language or "") or "en"


class Translator:
    """`t("key", name=...)` in templates and handlers: the catalog's text with its placeholders filled."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self._messages = catalog(lang)

    def __call__(self, key: str, **values: Any) -> str:
        text = self._messages.get(key, key)
        return text.format(**values) if values else text
