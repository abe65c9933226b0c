"""Which entry a request came in by: the global entry (USD, English) or the China entry (CNY,
Simplified Chinese). Both reach the same API and MCP; the entry only sets what an anonymous visitor
is shown first (prices in /v1/models, the console's and docs' language) and what an account opened
there is opened in. An account's own currency, once opened, always wins over the entry.

The operator maps host names or path prefixes to entries in BATCHIN_ENTRIES, e.g.
`api.example.com=global,api.example.cn=china,/cn=china`. A path prefix (it starts with "/") matches
the path itself or anything below it, and wins over a host (the longest prefix first); a host is
matched against the request's host name, with or without its port. A request that matches nothing
is the global entry's. The Host header is the caller's to choose, so nothing that guards money or
access may rest on the entry: it picks a default, never a permission.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request

from batchin.config import Settings
from batchin.protocol.currency import Currency

__all__ = ["CHINA", "GLOBAL", "Entry", "EntryMap", "entry_of"]

EntryName = Literal["global", "china"]


@dataclass(frozen=True, slots=True)
class Entry:
    name: EntryName
    currency: Currency
    language: Literal["en", "zh"]
    prefix: str = ""  # the path prefix the request matched ("" for a host or no match)


GLOBAL = Entry("global", "USD", "en")
CHINA = Entry("china", "CNY", "zh")
_BY_NAME: dict[str, Entry] = {"global": GLOBAL, "china": CHINA}


@dataclass(frozen=True, slots=True)
class EntryMap:
    hosts: dict[str, Entry]
    prefixes: tuple[tuple[str, Entry], ...]  # longest first

    @classmethod
    def from_settings(cls, settings: Settings) -> EntryMap:
        hosts = {m.lower(): _BY_NAME[e] for m, e in settings.entries.items() if not m.startswith("/")}
        prefixes = sorted(
            ((m.rstrip("/"), _BY_NAME[e]) for m, e in settings.entries.items() if m.startswith("/")),
            key=lambda pair: -len(pair[0]),
        )
        return cls(hosts=hosts, prefixes=tuple(prefixes))

    def of(self, request: Request) -> Entry:
        path = request.url.path
        for prefix, entry in self.prefixes:
            if prefix and (path == prefix or path.startswith(prefix + "/")):
                return Entry(entry.name, entry.currency, entry.language, prefix)
        host = (request.headers.get("host") or "").lower()
        return self.hosts.get(host) or self.hosts.get(host.rsplit(":", 1)[0]) or GLOBAL


def entry_of(request: Request) -> Entry:
    """The entry of `request`, by the running app's settings (the map is built once per settings)."""
    state = request.app.state
    settings: Settings = state.services.settings
    cached: tuple[Settings, EntryMap] | None = getattr(state, "entry_map", None)
    if cached is None or cached[0] is not settings:
        cached = (settings, EntryMap.from_settings(settings))
        state.entry_map = cached
    return cached[1].of(request)
