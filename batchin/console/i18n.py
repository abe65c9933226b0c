"""The console's message catalogs (messages/en.json, messages/zh.json) and the choice of language:
`?lang=` (remembered in the `batchin_lang` cookie), else that cookie, else Accept-Language.

Every string a page shows is a key of both catalogs (tests/console/test_i18n.py checks they hold the
same keys and placeholders); a missing key shows the key itself, never a blank."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from batchin.http_api.language import LANGUAGES, Language, is_language
from batchin.http_api.language import choose_language as shared_choice

__all__ = ["LANGUAGES", "LANG_COOKIE", "Translator", "catalog", "choose_language"]

LANG_COOKIE = "batchin_lang"


@cache
def catalog(lang: str) -> dict[str, str]:
    text = resources.files("batchin.console").joinpath("messages", f"{lang}.json").read_text("utf-8")
    loaded: dict[str, str] = json.loads(text)
    return loaded


def choose_language(
    query: str | None, cookie: str | None, accept_language: str | None, default: Language = "en"
) -> Language:
    """`?lang=`, else the remembered cookie, else Accept-Language, else `default` (the entry's
    language); the shared rule is http_api/language.py's."""
    explicit = query if is_language(query) else cookie
    return shared_choice(explicit, accept_language, default)


class Translator:
    """`t("key", name=...)` in templates and handlers: the catalog's text with its placeholders filled."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self._messages = catalog(lang)

    def __call__(self, key: str, **values: Any) -> str:
        text = self._messages.get(key, key)
        return text.format(**values) if values else text
