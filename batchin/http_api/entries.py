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

Links the server sends a person away with (the email verification link, Stripe Checkout's return
addresses) bring them back through the entry they came by (`link_base_of`): a host entry's own
origin when the request's host is one the operator mapped, else the configured base URL. A host
nobody configured never makes it into a link, so a forged Host header cannot aim a mailed link or a
payment return at another site.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from starlette.requests import Request

from batchin.config import Settings
from batchin.protocol.currency import Currency

__all__ = ["CHINA", "GLOBAL", "Entry", "EntryMap", "entry_of", "link_base_of"]

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

    def _by_host(self, request: Request) -> tuple[str, Entry] | None:
        """The request's Host header and its entry, when its host (with or without the port) is mapped."""
        host = (request.headers.get("host") or "").lower()
        entry = self.hosts.get(host) or self.hosts.get(host.rsplit(":", 1)[0])
        return None if entry is None else (host, entry)

    def mapped_host(self, request: Request) -> str | None:
        """The request's Host header when its host is one of the mapped entry hosts, else None."""
        found = self._by_host(request)
        return None if found is None else found[0]

    def of(self, request: Request) -> Entry:
        path = request.url.path
        for prefix, entry in self.prefixes:
            if prefix and (path == prefix or path.startswith(prefix + "/")):
                return Entry(entry.name, entry.currency, entry.language, prefix)
        found = self._by_host(request)
        return GLOBAL if found is None else found[1]


def _map_of(request: Request) -> tuple[Settings, EntryMap]:
    """The running app's settings and their entry map (built once per settings)."""
    state = request.app.state
    settings: Settings = state.services.settings
    cached: tuple[Settings, EntryMap] | None = getattr(state, "entry_map", None)
    if cached is None or cached[0] is not settings:
        cached = (settings, EntryMap.from_settings(settings))
        state.entry_map = cached
    return cached


def entry_of(request: Request) -> Entry:
    """The entry of `request`, by the running app's settings."""
    return _map_of(request)[1].of(request)


def link_base_of(request: Request) -> str:
    """The base URL for links that bring this request's person back: the mapped entry host they came
    by (with the configured base URL's scheme when one is set, as a TLS proxy hides it), else the
    configured base URL."""
    settings, entries = _map_of(request)
    host = entries.mapped_host(request)
    if host is None:
        return settings.own_base_url
    scheme = urlsplit(settings.public_base_url).scheme if settings.public_base_url_configured else ""
    return f"{scheme or request.url.scheme}://{host}"
