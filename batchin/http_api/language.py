"""Which language a page is shown in: one rule for the docs pages and, later, the console.

A language named explicitly (the URL's `/zh/` prefix, or a choice the person made and the caller
kept) always wins. Accept-Language is consulted only when the caller passes it: the docs and
llms.txt never do, so a URL answers the same text to everyone (agents get English at `/llms.txt`
whatever their client sends, and a cache needs no Vary), and a reader switches with the link on
every page. Anything else is the default, English.
"""

from __future__ import annotations

from typing import Literal, TypeGuard

__all__ = ["DEFAULT_LANGUAGE", "LANGUAGES", "Language", "choose_language", "is_language"]

Language = Literal["en", "zh"]
LANGUAGES: tuple[Language, ...] = ("en", "zh")
DEFAULT_LANGUAGE: Language = "en"


def is_language(value: str | None) -> TypeGuard[Language]:
    return value in LANGUAGES


def choose_language(
    explicit: str | None = None, accept_language: str | None = None, default: Language = DEFAULT_LANGUAGE
) -> Language:
    """`explicit` if it is one we have; else the first of ours that Accept-Language ranks above
    zero (`zh-CN`, `zh-Hans` and `zh` all mean Simplified Chinese here); else `default`."""
    if is_language(explicit):
        return explicit
    ranked: list[tuple[float, int, Language]] = []
    for position, item in enumerate((accept_language or "").split(",")):
        tag, _, params = item.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if not is_language(primary):
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else default
