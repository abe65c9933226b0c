"""Which base URL an absolute link in a response names: the discovery documents' links and the
signed media links (images' data[].url, a video's output_url) follow this one rule.

BATCHIN_PUBLIC_BASE_URL when the operator set it (a proxy in front may not pass the public host
on). Otherwise the server as the caller reached it, but only when the request's Host is an allowed
one (loopback names, the bind host, BATCHIN_ALLOWED_HOSTS): the Host header is the caller's to
forge, and a cache in front would hand links pointing at the forger's host to everyone. Any other
Host gets the server's own base (`Settings.own_base_url`: its bind address and port).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from starlette.requests import Request

from batchin.config import Settings

__all__ = ["PublicOrigin"]

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_ANY_ADDRESS = ("0.0.0.0", "::", "")  # bind addresses for every interface: never a name to link to


@dataclass(frozen=True, slots=True)
class PublicOrigin:
    configured: str | None  # public_base_url, when the operator set it
    fallback: str
    allowed_hosts: frozenset[str]

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        bind = () if settings.host in _ANY_ADDRESS else (settings.host,)
        hosts = frozenset(h.lower().strip("[]") for h in (*_LOOPBACK_NAMES, *bind, *settings.allowed_hosts))
        configured = settings.own_base_url if settings.public_base_url_configured else None
        return cls(configured=configured, fallback=settings.own_base_url, allowed_hosts=hosts)

    def of(self, request: Request) -> str:
        """The base URL (no trailing slash) links in the response to `request` name."""
        if self.configured is not None:
            return self.configured
        asked = request.base_url
        if (asked.hostname or "").lower().strip("[]") in self.allowed_hosts:
            return str(asked).rstrip("/")
        return self.fallback
